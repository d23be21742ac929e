"""``perfmodel sweep``: one row per (width, batch, hardware) configuration."""
import click
from tabulate import tabulate

from .. import hardware
from ..errors import PerfmodelError
from ..grid import csv_chunks, rows, sweep as run_sweep, sweep_chunks
from ..units import fmt_bytes, fmt_seconds
from .options import (
    IntList,
    StrList,
    collect_knobs,
    dtype_option,
    knob_options,
    optimizer_option,
    output_format,
    to_json,
)


@click.command()
@click.option("--model", required=True, help="architecture (see `perfmodel models`)")
@click.option("--widths", required=True, type=IntList(), help="e.g. 64,128,256 or 64..8192 (doubling)")
@click.option("--batches", type=IntList(), default=None, help="batch sizes (default: the model's)")
@click.option("--hardware", "hw_names", type=StrList(), default=hardware.DEFAULT_GPU, show_default=True,
              help="comma-separated profile names or paths")
@knob_options
@dtype_option()
@optimizer_option()
@output_format
def sweep(model, widths, batches, hw_names, batch, seq_len, sets, dtype, optimizer, as_json, as_csv):
    """Predict time per step over widths x batches x hardware."""
    knobs = collect_knobs(None, seq_len, sets)
    if batch is not None and batches:
        raise PerfmodelError(f"--batch {batch} and --batches {','.join(map(str, batches))} both give the batch: "
                             "give one of them")
    batches = batches or ([batch] if batch else [None])
    hws = [hardware.load(h) for h in hw_names]
    if as_csv:  # streamed: rows are written as each chunk of configurations is priced
        for text in csv_chunks(sweep_chunks(model, widths, hws, batches, dtype, optimizer, **knobs)):
            click.echo(text, nl=False)
        return
    table = rows(run_sweep(model, widths, hws, batches, dtype, optimizer, **knobs))
    if as_json:
        click.echo(to_json(table))
    else:
        click.echo(tabulate([[r["hardware"], r["width"], r["batch"], f"{r['params']:,}",
                              fmt_seconds(r["time_per_step_s"]), fmt_bytes(r["memory_bytes"]),
                              "yes" if r["fits_in_memory"] else "NO"] for r in table],
                            headers=["hardware", "width", "batch", "params", "time/step", "memory", "fits"],
                            disable_numparse=True))
