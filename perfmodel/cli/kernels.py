"""``perfmodel kernels``: predicted vs measured kernel times, MAPE per kind."""
import click
from tabulate import tabulate

from .. import hardware
from ..kernel_check import mape, predict_rows, read_kernel_csv, summary
from ..units import fmt_seconds
from .options import to_json


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--hardware", "hw_name", required=True, help="profile name or path (rows of its GPU are used)")
@click.option("--gpu-name", "--gpu", "gpu", default=None,
              help="use rows of this gpu column value instead of the profile's family")
@click.option("--json", "as_json", is_flag=True,
              help="print {rows, mape, by_phase, unmodelled}; errors and MAPEs as fractions (0.12 = 12%)")
def kernels(files, hw_name, gpu, as_json):
    """Predict each kernel row of FILES (DeepBench gemm/rnn/conv layout) and report MAPE per kind."""
    hw = hardware.load(hw_name)
    preds, skipped = [], []
    for f in files:
        p, s = predict_rows(read_kernel_csv(f), hw, gpu)
        preds += p
        skipped += s
    if not preds and not skipped:
        raise click.UsageError(f"no rows for GPU {gpu or hw.name!r} in {', '.join(files)}; use --gpu-name NAME")
    if as_json:
        click.echo(to_json({"hardware": hw.name, "rows": preds, "mape": mape(preds), "by_phase": summary(preds),
                            "unmodelled": skipped}))
        return
    click.echo(tabulate([[p["kind"], p["dtype"], p["shape"], p["phase"], fmt_seconds(p["measured_s"]),
                          fmt_seconds(p["predicted_s"]), f"{100 * p['error']:+.1f}%"] for p in preds],
                        headers=["kind", "dtype", "shape", "phase", "measured", "predicted", "error"],
                        disable_numparse=True))
    for s in skipped:
        click.echo(f"not modelled: {s['kind']} row {s['row']} {s['phase']}: {s['reason']}")
    click.echo(tabulate([[g["kind"], g["dtype"], g["phase"], g["rows"], f"{100 * g['mape']:.1f}%",
                          f"{100 * g['median_error']:+.1f}%", f"{100 * g['debiased_mape']:.1f}%"]
                         for g in summary(preds)],
                        headers=["kind", "dtype", "phase", "rows", "MAPE", "median error",
                                 "MAPE without the median bias"],
                        disable_numparse=True))
    for kind, v in mape(preds).items():
        n = sum(p["kind"] == kind for p in preds)
        click.echo(f"MAPE {kind}: {100 * v:.1f}% over {n} measurements on {hw.name}")
