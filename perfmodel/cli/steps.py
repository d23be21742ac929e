"""``perfmodel steps measure|fit``: measure steps to minimum validation loss, fit the step law."""
import math
import shlex

import click

from .options import CorpusPath, IntList, collect_knobs, to_json


@click.group()
def steps():
    """Step-count laws: steps to minimum validation loss vs model size, data size and batch."""


@steps.command()
@click.option("--model", required=True, type=click.Choice(["charlm", "wordlm", "mlp"]))
@click.option("--widths", type=IntList(), help="widths, e.g. 32,64,128 or 32..256 (model default)")
@click.option("--data-sizes", type=IntList(), help="training-set sizes (characters, words or examples)")
@click.option("--batch", "batches", type=IntList(), help="batch size(s), e.g. 32 or 8..128")
@click.option("--optimizer", default="adam", show_default=True, type=click.Choice(["sgd", "adam"]))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="learning rate [adam 2e-3, sgd 0.1]")
@click.option("--corpus", type=CorpusPath(),
              help="'shakespeare' (built-in text) or a text file (default: built-in generator)")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--max-epochs", default=30, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--eval-every", default=25, show_default=True, type=click.IntRange(min=1), help="steps")
@click.option("--patience", default=12, show_default=True, type=click.IntRange(min=1), help="evaluations")
@click.option("--seq-len", type=click.IntRange(min=1), help="sequence length (LMs)")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="model or data knob, e.g. --set depth=2")
@click.option("--grad-probe", default=64, show_default=True, type=click.IntRange(min=0),
              help="examples for gradient statistics at each probe point (0: none)")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="worker processes")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads per run [cpu count / jobs]")
@click.option("--ray-address", help="run on a Ray cluster instead: its address, or 'local' to start one here "
              "(needs `pip install 'perfmodel[ray]'`)")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="runs CSV (appended, resumable)")
def measure(model, widths, data_sizes, batches, optimizer, lr, corpus, seeds, max_epochs, eval_every,
            patience, seq_len, sets, grad_probe, jobs, threads, ray_address, no_progress, output):
    """Train every (width, data size, batch, seed) to minimum validation loss; one CSV row per run."""
    from ..steps.sweep import SweepConfig, capped_warning, run_sweep
    knobs = collect_knobs(None, seq_len, sets)
    config = SweepConfig.with_defaults(model, widths=widths, data_sizes=data_sizes, batches=batches,
                                       seeds=seeds, optimizer=optimizer, lr=lr, corpus=corpus,
                                       max_epochs=max_epochs, eval_every=eval_every, patience=patience,
                                       grad_probe=grad_probe, knobs=knobs)
    counts = run_sweep(config, output, jobs, ray_address, not no_progress, threads)
    click.echo(f"{counts['done']} runs measured, {counts['skipped']} already in {output}")
    warn = capped_warning(config, output)
    if warn:
        click.echo(warn, err=True)


@steps.command()
@click.argument("runs", type=click.Path(exists=True, dir_okay=False))
@click.option("--form", help="law form(s) to choose from, comma-separated: power, power_gamma, power_nob, epochs "
              "(each optionally +floor); default: all, chosen by leave-widest-width-out extrapolation")
@click.option("--free-gamma", is_flag=True, help="only the power_gamma form (a*D^gamma*M^-k + b)")
@click.option("--plateau", is_flag=True, help="fit a floor at a minimum number of epochs")
@click.option("--target", default="steps_to_min", show_default=True,
              type=click.Choice(["steps_to_min", "steps_to_converge"]))
@click.option("--capped", default="lower-bound", show_default=True, type=click.Choice(["lower-bound", "exclude"]),
              help="how runs that hit the epoch cap enter the fit")
@click.option("--batch-runs", type=click.Path(exists=True, dir_okay=False),
              help="runs at several batch sizes for the batch law (default: RUNS)")
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(min=0), help="resamples for CIs")
@click.option("--json", "as_json", is_flag=True, help="print the fit as JSON")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write the law JSON here")
def fit(runs, form, free_gamma, plateau, target, capped, batch_runs, bootstrap, as_json, output):
    """Fit step-law forms to a runs CSV, choose one by extrapolation, keep its bootstrap draws."""
    from ..outputs import check_output
    from ..steps.fit import candidate_forms, fit_law, format_report, provenance, read_runs, summary
    from ..steps.law import save_law
    candidate_forms(form, free_gamma, plateau)  # unknown form names fail here, before any work
    if output is not None:
        check_output(output, inputs=[runs] + ([batch_runs] if batch_runs else []), what="law")
    law = fit_law(read_runs(runs), free_gamma=free_gamma, plateau=plateau, target=target, capped=capped,
                  n_boot=bootstrap, batch_runs=read_runs(batch_runs) if batch_runs else None, form=form)
    law.provenance = provenance(_invocation(click.get_current_context()), runs, law)
    if output is not None:
        save_law(law, output)
    click.echo(to_json(summary(law)) if as_json else format_report(law))


def _invocation(ctx) -> str:
    """The command as typed, rebuilt from its parameters (options left at their default omitted)."""
    words = ["perfmodel", "steps", ctx.command.name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if isinstance(p, click.Argument):
            words.append(str(v))
        elif v not in (None, False, p.default):
            words += [p.opts[-1]] if v is True else [p.opts[-1], str(v)]
    return shlex.join(words)


def _target(f):
    """LAW, --params and --dataset-size: the point a law is asked about."""
    f = click.option("--dataset-size", required=True, type=click.FloatRange(min=0, min_open=True),
                     help="training-set size D in the law's unit")(f)
    f = click.option("--params", required=True, type=click.FloatRange(min=0, min_open=True),
                     help="trainable parameters M")(f)
    return click.argument("law_path", metavar="LAW", type=click.Path(dir_okay=False))(f)


@steps.command("predict")
@_target
@click.option("--batch", type=click.FloatRange(min=0, min_open=True), help="examples per step (default: the law's)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def predict_steps(law_path, params, dataset_size, batch, as_json):
    """Median steps to converge with 80% and 95% intervals and the extrapolation distance."""
    from ..steps.law import load_law
    from ..steps.uncertainty import extrapolation_warning, interval
    law = load_law(law_path)
    out = interval(law, params, dataset_size, batch)
    warn = extrapolation_warning(law, params, dataset_size)
    if warn:
        click.echo(warn, err=True)
    if as_json:
        click.echo(to_json(out))
        return
    x = {k: ("?" if v != v else f"{v:.3g}") for k, v in out["extrapolation"].items()}  # NaN: range unknown
    ci = (f"80% [{out['interval_80'][0]:,.0f}, {out['interval_80'][1]:,.0f}], "
          f"95% [{out['interval_95'][0]:,.0f}, {out['interval_95'][1]:,.0f}]" if out["interval_80"]
          else out["intervals"])
    click.echo(f"{law.model}: {out['steps']:,.0f} steps at M = {params:.4g}, D = {dataset_size:.4g}"
               f"{f', B = {batch:g}' if batch else ''}; {ci}; "
               f"{x['params_x']}x beyond the measured parameters, {x['dataset_x']}x beyond the measured data")


@steps.command("suggest")
@_target
@click.option("--budget-hours", type=click.FloatRange(min=0, min_open=True), help="hours of this machine to spend")
@click.option("--runs", "runs_path", type=click.Path(dir_okay=False),
              help="the law's runs CSV (default: its provenance runs_file, or <model>_runs.csv beside it)")
@click.option("--hardware", "hw_name", help="profile that prices each run (default: this machine's calibrated CPU "
              "profile, else cpu-generic)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def suggest_runs(law_path, params, dataset_size, budget_hours, runs_path, hw_name, as_json):
    """The next runs that would shrink the 80% interval at the target most per hour.

    The shrink is simulated from the law's own draws, so it is an upper bound: a run that
    contradicts the law widens the interval instead."""
    from pathlib import Path

    from .. import hardware
    from ..errors import PerfmodelError
    from ..steps.fit import read_runs
    from ..steps.law import load_law
    from ..steps.suggest import suggest
    law = load_law(law_path)
    if not runs_path:
        guesses = [law.provenance.get("runs_file"), Path(law_path).with_name(f"{law.model}_runs.csv")]
        runs_path = next((str(g) for g in guesses if g and Path(g).is_file()), None)
        if runs_path is None:
            raise PerfmodelError(f"cannot find the runs of {law_path!r}; pass --runs FILE")
    hw = hardware.load(hw_name or hardware.local_cpu_profile())
    out = suggest(law, read_runs(runs_path), params, dataset_size, hw, budget_hours)
    if as_json:
        click.echo(to_json(out))
        return
    click.echo(f"{law.model}: target M = {params:.4g}, D = {dataset_size:.4g}; 80% interval now spans "
               f"x{math.exp(out['interval_80_log_width_now']):.2f} (hi/lo); runs priced on {hw.name}")
    for i, r in enumerate(out["suggested"], 1):
        click.echo(f"  {i}. width {r['width']}, D = {r['dataset_size']:.4g}, 1 seed: "
                   f"~{r['predicted_steps']:,.0f} steps, "
                   f"{r['cost_hours']:.2f} h; interval x{math.exp(out['interval_80_log_width_now']):.2f} -> "
                   f"x{math.exp(out['interval_80_log_width_now'] - r['log_width_gain']):.2f}")
    if not out["suggested"]:
        click.echo("  no candidate run narrows the interval within the budget")
    click.echo(f"  total {out['total_hours']:.2f} h of {out['candidates']} candidates scored ({out['method']})")
