"""``perfmodel demo``: the README's main job on the embedded defaults (no GPU, no download)."""
import click

from .. import hardware
from ..predict import predict
from .tables import prediction_text


@click.command()
@click.option("--model", default="charlm", show_default=True)
@click.option("--width", default=4096, show_default=True, type=click.IntRange(min=1))
def demo(model, width):
    """Predict MODEL at WIDTH on a shipped GPU profile and on this machine's CPU."""
    cpu = hardware.local_cpu_profile()
    for name in (hardware.DEFAULT_GPU, cpu):
        click.echo(prediction_text(predict(model, width, hardware.load(name))))
        click.echo()
    if cpu == hardware.DEFAULT_CPU:
        click.echo("note: the CPU figures use the generic datasheet profile; run `perfmodel calibrate --cpu` "
                   "to measure this machine.")
