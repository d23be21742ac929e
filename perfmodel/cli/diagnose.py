"""``perfmodel diagnose``: why wider models take fewer steps (traversal, confusion, diversity)."""
import json

import click

from ..errors import PerfmodelError
from .options import collect_knobs, parse_int_list


def _int_list(text, what):
    if text is None:
        return []
    try:
        return parse_int_list(text, what)
    except click.BadParameter as e:
        raise PerfmodelError(e.message) from None


@click.command()
@click.option("--model", required=True, help="charlm, wordlm or mlp")
@click.option("--widths", required=True, metavar="LIST", help="e.g. 64,128 or 64..1024 (doubling)")
@click.option("--seeds", default=3, show_default=True, type=int, help="seeds per width")
@click.option("--corpus", type=click.Path(dir_okay=False), help="text file (default: built-in generator)")
@click.option("--steps", default=300, show_default=True, type=int, help="optimizer steps per run")
@click.option("--batch", default=32, show_default=True, type=int, help="examples per step")
@click.option("--optimizer", default="sgd", show_default=True, help="sgd or adam")
@click.option("--lr", type=float, help="learning rate [sgd 1.0, adam 2e-3]")
@click.option("--probe", default=16, show_default=True, type=int,
              help="examples whose per-example gradients give confusion and diversity")
@click.option("--depths", metavar="LIST", help="also measure confusion at init versus depth")
@click.option("--seq-len", type=int, help="sequence length (language models; default: as `steps measure`, charlm 32)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="model or data knob, e.g. --set depth=4 (default: the small models of `steps measure`, "
                   "charlm depth 2)")
@click.option("--json", "as_json", is_flag=True, help='print {"rows": [...], "trends": {...}, ...}')
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="rows CSV (rewritten after every run)")
@click.option("--threads", default=1, show_default=True, type=int, help="torch intra-op threads")
@click.option("--no-progress", is_flag=True, help="no progress bars")
def diagnose(model, widths, seeds, corpus, steps, batch, optimizer, lr, probe, depths, seq_len, sets,
             as_json, output, threads, no_progress):
    """Train each width for --steps steps and report weight-space traversal, gradient
    confusion and gradient diversity, with their trends (log-log slope, 95% interval)."""
    from ..diagnostics.run import diagnose as run_diagnose, format_summary, jsonable
    try:
        knobs = collect_knobs(None, seq_len, sets)
    except click.BadParameter as e:
        raise PerfmodelError(e.message) from None
    result = run_diagnose(model, _int_list(widths, "width"), seeds=seeds, corpus=corpus, steps=steps,
                          batch=batch, lr=lr, optimizer=optimizer, probe=probe, knobs=knobs,
                          depths=_int_list(depths, "depth"), progress=not no_progress, csv_path=output,
                          threads=threads)
    click.echo(json.dumps(jsonable(result), indent=1) if as_json else format_summary(result))
