"""``perfmodel demo``: the README's main job on the embedded defaults (no GPU, no download).

1. time per step of MODEL at WIDTH on a shipped GPU profile and on this machine's CPU;
2. would a bigger model finish sooner?  ``perfmodel plan`` over widths with the step law
   shipped for the model (when there is one) on a few GPUs;
3. the same as a self-contained HTML report under ``reports/``.
"""
from pathlib import Path

import click

from .. import hardware
from ..predict import predict
from .tables import prediction_text


@click.command()
@click.option("--model", default="charlm", show_default=True)
@click.option("--width", default=4096, show_default=True, type=click.IntRange(min=1))
@click.option("--devices", default=8, show_default=True, type=click.IntRange(min=1),
              help="GPUs for the plan over widths")
@click.option("--dataset-size", default=1e8, show_default=True, type=float,
              help="training-set size in the shipped step law's unit (characters for charlm)")
@click.option("--report", "report_path", default="reports/demo.html", show_default=True,
              type=click.Path(dir_okay=False), help="where to write the HTML report ('' for none)")
def demo(model, width, devices, dataset_size, report_path):
    """Predict MODEL at WIDTH on a GPU and this CPU, plan total training time over widths, write a report."""
    from ..architectures import get_spec
    from ..total import check_dataset_size
    get_spec(model)                 # bad input fails here, before any output
    check_dataset_size(dataset_size)
    if report_path:
        from ..outputs import check_output
        check_output(report_path, what="report")
    cpu = hardware.local_cpu_profile()
    for name in (hardware.DEFAULT_GPU, cpu):
        click.echo(prediction_text(predict(model, width, hardware.load(name))))
        click.echo()
    if cpu == hardware.DEFAULT_CPU:
        click.echo("note: the CPU figures use the generic datasheet profile; run `perfmodel calibrate --cpu` "
                   "to measure this machine.\n")
    from ..steps.law import default_law_path
    if not default_law_path(model).is_file():
        click.echo(f"no step law is shipped for {model}: measure one with `perfmodel steps measure` and "
                   "`perfmodel steps fit` to predict total training time.")
        return
    from ..parallel.search import SearchSpace, plan
    from ..scenario import Scenario
    from ..total import load_law
    from .tables import plan_text
    law = load_law(default_law_path(model))
    widths = [256 * 2**i for i in range(6)]
    click.echo("Would a bigger model finish sooner?  Total time = steps (shipped law, "
               f"k = {law.k:.3f}, measured at small scale and extrapolated) x time per step:")
    p = plan(Scenario(model, hardware.load(hardware.DEFAULT_GPU)), widths, SearchSpace(devices), dataset_size, law)
    click.echo(plan_text(p))
    if (p.uncertainty or {}).get("warning"):
        click.echo(p.uncertainty["warning"])
    if report_path:
        from ..report import write_report
        path = write_report(report_path, model, hardware=(hardware.DEFAULT_GPU, cpu), dataset_size=dataset_size,
                            devices=devices, command=f"perfmodel demo --model {model}")
        click.echo(f"\nreport: {Path(path).resolve()}")
