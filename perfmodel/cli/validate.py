"""``perfmodel validate``: predicted vs measured training steps (library: ``perfmodel.validate``)."""
import click

from ..validate import TORCH_OPTIMIZERS, VALIDATE_DTYPES
from .options import IntList, collect_knobs, dtype_option, knob_options, optimizer_option, to_json


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
@click.option("--widths", type=IntList(), default=None, help="e.g. 64,128,256 or 64..1024 (doubling)")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="instead of --widths: N random configurations (width, batch, sequence, knobs) predicted "
                   "to take at most --max-step-s per step; --batch, --seq-len and --set hold those knobs fixed")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the --sample draw")
@click.option("--max-step-s", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="--sample keeps configurations predicted at most this long per step")
@knob_options
@click.option("--hardware", "hw_name", default=None,
              help="profile (default: local-cpu if calibrated, else cpu-generic; local-gpu/H100-SXM5 on cuda)")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@dtype_option(VALIDATE_DTYPES)
@optimizer_option(TORCH_OPTIMIZERS)
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
@click.option("--speed-probe/--no-speed-probe", default=True, show_default=True,
              help="re-time a few of the profile's calibration points next to each configuration's steps and "
                   "report the error with the machine's drift since calibration taken out")
@click.option("--record", is_flag=True, help="store the MAPE in the (calibrated) profile: total-time intervals use it")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def validate(model, widths, sample, seed, max_step_s, batch, seq_len, sets, hw_name, device, dtype, optimizer,
             warmup, repeats, rounds, threads, clock, stat, fresh_process, speed_probe, record, as_json):
    """Run real training steps, compare with the prediction: error per width (or sampled configuration) and MAPE."""
    from tabulate import tabulate

    from .. import hardware
    from ..errors import PerfmodelError
    from ..hardware.stability import unstable_warning
    from ..units import fmt_seconds
    from ..validate import validate as run_validate

    if (widths is None) == (sample is None):
        raise PerfmodelError("give one of --widths LIST or --sample N")
    knobs = collect_knobs(batch, seq_len, sets)
    if sample is not None and "width" in knobs:
        raise PerfmodelError("--set width is not allowed with --sample: the width is always drawn")
    hw = hardware.load(hw_name or _default_hardware(device))
    if record:
        from ..hardware.record import check_recordable
        check_recordable(hw)          # before any step runs
    warning = unstable_warning(hw)
    if warning:
        click.echo(warning, err=True)
    run = {"device": device, "warmup": warmup, "repeats": repeats, "threads": threads, "clock": clock,
           "progress": not as_json, "stat": stat, "rounds": rounds, "fresh_process": fresh_process,
           "speed_probe": speed_probe}
    if sample is not None:
        from ..validate_sample import Ranges, validate_sample
        v, info = validate_sample(model, sample, hw, seed, max_step_s, Ranges(fixed=knobs), dtype=dtype,
                                  optimizer=optimizer, **run)
        _record(record, hw, v, model)
        return _print_sample(v, info, as_json)
    v = run_validate(model, widths, hw, dtype=dtype, optimizer=optimizer, **run, **knobs)
    _record(record, hw, v, model)
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
        click.echo("MAPE had the model priced the page faults measured above: "
                   f"{100 * v.mape_with_measured_faults:.1f}% "
                   "(where the faults explain the error; they follow glibc's allocation history, which the "
                   "model does not predict)")
    _print_speed_adjusted(v)
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


def _print_speed_adjusted(v):
    if v.retimed:
        click.echo(f"re-timed {v.retimed} timings whose samples spread more than 25% (kept the steadiest try)")
    if v.mape_speed_adjusted is None:
        return
    ratios = [r.speed for r in v.rows if r.speed]
    groups = list(ratios[0])
    lo_hi = ", ".join(f"{g} {min(s[g] for s in ratios):.2f}-{max(s[g] for s in ratios):.2f}" for g in groups)
    click.echo("MAPE with the machine's speed next to each configuration taken out: "
               f"{100 * v.mape_speed_adjusted:.1f}% "
               f"(the model's own error; time now / calibrated on the profile's points, over the configurations: "
               f"{lo_hi})")


def _record(record, hw, v, model):
    if not record:
        return
    import sys

    from ..hardware.record import record_validation
    rec = record_validation(hw, v.mape, model, len(v.rows), " ".join(["perfmodel", *sys.argv[1:]]))
    click.echo(f"recorded MAPE {100 * rec['mape']:.1f}% ({model}) in {hw.path}", err=True)


def _print_sample(v, info, as_json):
    from tabulate import tabulate

    from ..units import fmt_seconds
    from ..validate_sample import class_line, error_classes, worst_rows
    worst = worst_rows(v)
    classes = error_classes(v)
    if as_json:
        click.echo(to_json({**v.to_dict(), "sample": info, "worst_rows": worst, "error_classes": classes}))
        return
    worst = [v.rows[i] for i in worst]
    click.echo(f"{v.model} on {v.device}: {info['n']} configurations drawn with seed {info['seed']} "
               f"({info['draws']} draws, predicted <= {info['max_step_s']:g} s per step on {v.hardware})")
    click.echo(f"the {len(worst)} largest errors:")
    click.echo(tabulate([[r.width, " ".join(f"{k}={x}" for k, x in r.knobs.items()), fmt_seconds(r.predicted_s),
                          fmt_seconds(r.measured_s), f"{100 * r.error:+.1f}%"] for r in worst],
                        headers=["width", "knobs", "predicted", "measured", "error"], disable_numparse=True))
    click.echo(class_line(classes))
    ran = sum(r.error is not None for r in v.rows)
    click.echo(f"MAPE over {ran} of {len(v.rows)} configurations: "
               + ("n/a (nothing ran)" if v.mape is None else f"{100 * v.mape:.1f}%"))
    _print_speed_adjusted(v)
