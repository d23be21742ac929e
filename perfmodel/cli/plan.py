"""``perfmodel plan`` and ``perfmodel whatif``: the fastest layout per width, and break-even hardware."""
import click

from .. import hardware
from .options import (
    IntList,
    StrList,
    build_options,
    collect_knobs,
    dtype_option,
    knob_options,
    optimizer_option,
    parallel_options,
    to_json,
)


def _plan_args(f):
    f = parallel_options(f)
    f = knob_options(f)
    for o in reversed([
        click.option("--model", required=True, help="architecture (see `perfmodel models`)"),
        click.option("--widths", required=True, type=IntList(), help="e.g. 256,512 or 256..8192 (doubling)"),
        click.option("--dataset-size", required=True, type=float, help="training-set size in the law's unit"),
        click.option("--steps-law", "law_path", type=click.Path(dir_okay=False), default=None,
                     help="fitted step law (law.json; default: the law shipped for the model, if any)"),
        click.option("--hardware", "hw_name", default=hardware.DEFAULT_GPU, show_default=True),
        click.option("--devices", required=True, type=click.IntRange(min=1), help="devices available"),
        click.option("--batches", type=IntList(), default=None,
                     help="global batch sizes allowed (default: powers of two up to --max-batch)"),
        click.option("--max-batch", type=click.IntRange(min=1), default=2**16, show_default=True),
        dtype_option(),
        optimizer_option(),
    ]):
        f = o(f)
    return f


def _run_args(model, hw_name, devices, batches, max_batch, dtype, optimizer, batch, seq_len, sets, law_path, popts,
              search_options: bool = False):
    """(Scenario, SearchSpace, step law) of the shared options."""
    from ..parallel.search import SearchSpace
    from ..parallel.search_options import OptionSearch
    from ..scenario import Scenario
    from ..total import load_law, shipped_law_path
    knobs = collect_knobs(batch, seq_len, sets)
    law_path = law_path or shipped_law_path(model)
    if "batch" in knobs:  # --batch pins the global batch
        batches = [knobs.pop("batch")]
    space = SearchSpace(devices, tuple(batches) if batches else None, max_batch,
                        options=OptionSearch() if search_options else None)
    hw, law = hardware.load(hw_name), load_law(law_path)
    return Scenario(model, hw, knobs, dtype, optimizer, build_options(*popts, searched=search_options)), space, law


@click.command()
@_plan_args
@click.option("--search-options", is_flag=True,
              help="also search the ZeRO stage, recompute mode, sequence parallelism, virtual stages and (MoE) "
                   "expert-parallel degree per layout (the rows name the choices)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def plan(model, widths, dataset_size, law_path, hw_name, devices, batches, max_batch, dtype, optimizer, batch,
         seq_len, sets, persistent_rnn, streams, recompute, schedule, allreduce, overlap, bucket_mib, zero,
         zero3_gather, recompute_every, sequence_parallel, virtual_stages, ep, search_options, as_json):
    """Fastest parallel layout and total training time for each width; then the fastest width."""
    from ..parallel.search import plan as run_plan
    scenario, space, law = _run_args(model, hw_name, devices, batches, max_batch, dtype, optimizer, batch, seq_len,
                                     sets, law_path, (persistent_rnn, streams, recompute, schedule, allreduce, overlap,
                                                      bucket_mib, zero, sequence_parallel, virtual_stages, ep,
                                                      zero3_gather, recompute_every),
                                     search_options)
    p = run_plan(scenario, widths, space, dataset_size, law)
    if (p.uncertainty or {}).get("warning"):
        click.echo(p.uncertainty["warning"], err=True)
    if as_json:
        click.echo(to_json(p.to_dict()))
    else:
        from .tables import plan_text
        click.echo(plan_text(p))


@click.command()
@_plan_args
@click.option("--resources", type=StrList(), default="compute,memory,interconnect,all", show_default=True,
              help="resources to speed up, one at a time (all: the three together)")
@click.option("--max-factor", type=float, default=1024.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def whatif(model, widths, dataset_size, law_path, hw_name, devices, batches, max_batch, dtype, optimizer, batch,
           seq_len, sets, persistent_rnn, streams, recompute, schedule, allreduce, overlap, bucket_mib, zero,
           zero3_gather, recompute_every, sequence_parallel, virtual_stages, ep, resources, max_factor, as_json):
    """How much faster compute, memory or interconnect must get for larger widths to train faster."""
    from ..parallel.whatif import break_even
    scenario, space, law = _run_args(model, hw_name, devices, batches, max_batch, dtype, optimizer, batch, seq_len,
                                     sets, law_path, (persistent_rnn, streams, recompute, schedule, allreduce, overlap,
                                                      bucket_mib, zero, sequence_parallel, virtual_stages, ep,
                                                      zero3_gather, recompute_every))
    r = break_even(scenario, widths, space, dataset_size, law, resources, max_factor)
    if (r.get("uncertainty") or {}).get("warning"):
        click.echo(r["uncertainty"]["warning"], err=True)
    if as_json:
        click.echo(to_json(r))
    else:
        from .tables import whatif_text
        click.echo(whatif_text(r))
