"""``perfmodel steps measure|fit``: measure steps to minimum validation loss, fit the step law."""
import shlex

import click

from .options import CorpusPath, IntList, parse_sets, to_json


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
@click.option("--corpus", type=CorpusPath(), help="'shakespeare' (built-in text) or a text file (default: built-in generator)")
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
    from ..steps.sweep import SweepConfig, run_sweep
    knobs = parse_sets(sets)
    if seq_len:
        knobs["seq_len"] = seq_len
    config = SweepConfig.with_defaults(model, widths=widths, data_sizes=data_sizes, batches=batches,
                                       seeds=seeds, optimizer=optimizer, lr=lr, corpus=corpus,
                                       max_epochs=max_epochs, eval_every=eval_every, patience=patience,
                                       grad_probe=grad_probe, knobs=knobs)
    counts = run_sweep(config, output, jobs, ray_address, not no_progress, threads)
    click.echo(f"{counts['done']} runs measured, {counts['skipped']} already in {output}")


@steps.command()
@click.argument("runs", type=click.Path(exists=True, dir_okay=False))
@click.option("--free-gamma", is_flag=True, help="fit the exponent of D (default: gamma = 1)")
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
def fit(runs, free_gamma, plateau, target, capped, batch_runs, bootstrap, as_json, output):
    """Fit steps = a*D^gamma*M^-k + b (and S(B) = S_min(1 + B_noise/B)) to a runs CSV."""
    from ..steps.fit import fit_law, format_report, provenance, read_runs, summary
    from ..steps.law import save_law
    law = fit_law(read_runs(runs), free_gamma=free_gamma, plateau=plateau, target=target, capped=capped,
                  n_boot=bootstrap, batch_runs=read_runs(batch_runs) if batch_runs else None)
    law.provenance = provenance(_invocation(click.get_current_context()), runs, law)
    if output:
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
