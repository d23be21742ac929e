"""``perfmodel validate``: predicted vs measured training steps (library: ``perfmodel.validate``)."""
import click

from .options import IntList, collect_knobs, knob_options, to_json


def _default_hardware(device: str) -> str:
    from .. import hardware
    if device == "cpu":
        return hardware.local_cpu_profile()
    return hardware.LOCAL_GPU if hardware.LOCAL_GPU in hardware.available() else hardware.DEFAULT_GPU


def _mib(nbytes) -> str:
    return "" if nbytes is None else f"{nbytes / 2**20:.1f} MiB"


def _pct(fraction) -> str:
    return "" if fraction is None else f"{100 * fraction:+.1f}%"


@click.command()
@click.option("--model", required=True, help="architecture (see `perfmodel models`)")
@click.option("--widths", required=True, type=IntList(), help="e.g. 64,128,256 or 64..1024 (doubling)")
@knob_options
@click.option("--hardware", "hw_name", default=None,
              help="profile (default: local-cpu if calibrated, else cpu-generic; local-gpu/H100-SXM5 on cuda)")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--dtype", default="fp32", show_default=True, type=click.Choice(["fp32", "tf32"]))
@click.option("--optimizer", default="sgd", show_default=True, type=click.Choice(["sgd", "momentum", "adam"]))
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="whole passes over the widths; median per width, and each round's MAPE")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: as the profile was calibrated)")
@click.option("--clock", type=click.Choice(["wall", "cpu"]), default=None,
              help="CPU clock (default: as the profile was calibrated, else wall)")
@click.option("--stat", type=click.Choice(["median", "min"]), default=None,
              help="statistic over repeats (default: as the profile was calibrated, else median)")
@click.option("--fresh-process/--same-process", default=True, show_default=True,
              help="time each width in a new process, as a training job starts (CPU malloc state carries over)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def validate(model, widths, batch, seq_len, sets, hw_name, device, dtype, optimizer, warmup, repeats, rounds,
             threads, clock, stat, fresh_process, as_json):
    """Run real training steps, compare with the prediction: error per width and MAPE."""
    from tabulate import tabulate

    from .. import hardware
    from ..units import fmt_seconds
    from ..validate import validate as run_validate

    hw = hardware.load(hw_name or _default_hardware(device))
    v = run_validate(model, widths, hw, device, warmup, repeats, threads, clock, dtype, optimizer,
                     progress=not as_json, stat=stat, rounds=rounds, fresh_process=fresh_process,
                     **collect_knobs(batch, seq_len, sets))
    if as_json:
        click.echo(to_json(v.to_dict()))
        return
    click.echo(f"{model} on {v.device} ({v.threads or '-'} threads, {v.clock} clock, {v.stat} of {repeats}, "
               f"{'a fresh process' if fresh_process else 'one process'} per width), "
               f"hardware {v.hardware}, knobs {v.knobs or 'defaults'}")
    faults = any(r.fresh_bytes is not None for r in v.rows)
    rows = [[r.width, fmt_seconds(r.predicted_s),
             r.note or fmt_seconds(r.measured_s), "" if r.error is None else f"{100 * r.error:+.1f}%"]
            + ([] if not faults else [_mib(r.predicted_fresh_bytes), _mib(r.fresh_bytes),
                                      _pct(r.error_with_measured_faults)])
            for r in v.rows]
    headers = ["width", "predicted", "measured", "error"] + (
        ["faulted in/step: model", "measured", "error, measured faults priced"] if faults else [])
    click.echo(tabulate(rows, headers=headers, disable_numparse=True))
    click.echo("MAPE: " + ("n/a (nothing ran)" if v.mape is None else f"{100 * v.mape:.1f}%"))
    if v.mape_with_measured_faults is not None:
        click.echo(f"MAPE had the model priced the page faults measured above: {100 * v.mape_with_measured_faults:.1f}% "
                   "(where the faults explain the error; they follow glibc's allocation history, which the "
                   "model does not predict)")
    if v.drift:
        before, after = v.drift["before"], v.drift.get("after") or {}
        groups = [g for g in before if g != "points"]
        click.echo("machine speed on the profile's own calibration points, time now / calibrated (> 1: slower "
                   "now), before / after the steps: "
                   + ", ".join(f"{g} {before[g]:.2f} / {after[g]:.2f}" if g in after else f"{g} {before[g]:.2f}"
                               for g in groups))
    if v.mape_by_round:
        click.echo(f"MAPE of each of the {rounds} rounds alone: "
                   + ", ".join(f"{100 * m:.1f}%" for m in v.mape_by_round) + " (the machine's run-to-run noise)")
