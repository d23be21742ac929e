"""``perfmodel predict``: time per step of one model at one width on one device."""
import click

from .. import hardware
from ..predict import predict as run_predict
from .options import collect_knobs, knob_options, output_format, rows_to_csv, to_json


@click.command()
@click.option("--model", required=True, help="architecture (see `perfmodel models`)")
@click.option("--width", required=True, type=click.IntRange(min=1), help="model-size knob (hidden size)")
@knob_options
@click.option("--hardware", "hw_name", default=hardware.DEFAULT_GPU, show_default=True,
              help="profile name (see `perfmodel hardware`) or path to a profile .json")
@click.option("--dtype", default="fp32", show_default=True, type=click.Choice(["fp32", "tf32", "fp16", "bf16", "fp8"]))
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(["sgd", "momentum", "adam"]))
@output_format
def predict(model, width, batch, seq_len, sets, hw_name, dtype, optimizer, as_json, as_csv):
    """Predict time per training step, with a per-layer and per-phase breakdown."""
    p = run_predict(model, width, hardware.load(hw_name), dtype, optimizer, **collect_knobs(batch, seq_len, sets))
    if as_json:
        click.echo(to_json(p.to_dict()))
    elif as_csv:
        click.echo(rows_to_csv(p.to_dict()["breakdown"]), nl=False)
    else:
        from .tables import prediction_text
        click.echo(prediction_text(p))
