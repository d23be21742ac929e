"""``perfmodel report``: one self-contained HTML file with plots and the tables behind them."""
import shlex
import sys

import click

from .. import hardware
from .options import IntList, StrList, collect_knobs, dtype_option, knob_options, optimizer_option

FILE = click.Path(dir_okay=False, exists=True)


@click.command()
@click.option("--model", required=True, help="architecture (see `perfmodel models`)")
@click.option("--hardware", "hw_names", type=StrList(), default=hardware.DEFAULT_GPU, show_default=True,
              help="comma-separated profile names or paths (one curve each)")
@click.option("--widths", type=IntList(), default="64..8192", show_default=True, help="e.g. 64..4096 (doubling)")
@click.option("--breakdown-widths", type=IntList(), default=None,
              help="widths whose step breakdown is shown (default: smallest, middle, largest)")
@knob_options
@dtype_option()
@optimizer_option()
@click.option("--steps-law", type=FILE, default=None,
              help="steps law JSON from `perfmodel steps fit` (default: the one shipped for the model, if any)")
@click.option("--runs", type=FILE, default=None,
              help="measured runs CSV (default: the runs shipped with the default law)")
@click.option("--dataset-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="dataset size D for total time (default: the largest in the runs)")
@click.option("--devices", type=click.IntRange(min=1), default=None,
              help="devices for the layout search (default: one node of each profile)")
@click.option("--profile", default=None, help="calibrated profile (name or path) whose tables are shown")
@click.option("--validation", type=FILE, default=None, help="`perfmodel validate --json` output")
@click.option("--kernels", type=FILE, default=None, help="`perfmodel kernels --json` output")
@click.option("--diagnostics", type=FILE, default=None, help="`perfmodel diagnose --json` output")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write")
def report(model, hw_names, widths, breakdown_widths, batch, seq_len, sets, dtype, optimizer, steps_law, runs,
           dataset_size, devices, profile, validation, kernels, diagnostics, output):
    """Write a self-contained HTML report: time per step, steps, total time, calibration, validation."""
    import time

    from ..report import write_report
    t0 = time.perf_counter()
    path = write_report(output, model, hardware=hw_names, widths=widths, breakdown_widths=breakdown_widths,
                        knobs=collect_knobs(batch, seq_len, sets), dtype=dtype, optimizer=optimizer,
                        steps_law=steps_law, runs=runs, dataset_size=dataset_size, devices=devices, profile=profile,
                        validation=validation, kernels=kernels, diagnostics=diagnostics,
                        command=shlex.join(["perfmodel", *sys.argv[1:]]))
    click.echo(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
