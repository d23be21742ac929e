"""Options shared by commands: integer lists, knob overrides, dtype, optimizer, parallel switches,
output formats."""
from __future__ import annotations

import csv
import functools
import io
import json
import math

import click
import numpy as np

from ..errors import PerfmodelError
from ..graph import PRICED_OPTIMIZERS
from ..ops import DTYPES
from ..parallel.collectives import ALGORITHMS
from ..parallel.layout import SCHEDULES


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("ch", "sh", "s", "x")) else "s")


def _singular(name: str) -> str:
    """An option's name as one value: ``widths`` -> ``width``, ``batches`` -> ``batch``,
    ``data_sizes`` -> ``data size``."""
    word = name.replace("_", " ")
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def parse_int_list(text: str, what: str = "value") -> list[int]:
    """``64,128,256`` or ``64..8192`` (doubling) or a mix: ``16,64..256``; ``what`` names one value."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if ".." in part:
                lo, hi = (int(x) for x in part.split(".."))
                if lo <= 0 or hi < lo:
                    raise ValueError
                v = lo
                while v <= hi:
                    out.append(v)
                    v *= 2
            else:
                out.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{what} list {text!r} is not allowed: use positive integers like "
                                     "'64,128,256' or a doubling range like '64..8192'") from None
    bad = [v for v in out if v <= 0]
    if bad or not out:
        raise click.BadParameter(f"{what} {bad[0] if bad else text!r} is not allowed; "
                                 f"{_plural(what)} must be positive integers")
    return out


class IntList(click.ParamType):
    name = "LIST"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        return parse_int_list(value, _singular(param.name) if param else "value")


class StrList(click.ParamType):
    name = "LIST"

    def convert(self, value, param, ctx):
        return value if isinstance(value, list) else [v.strip() for v in value.split(",") if v.strip()]


class CorpusPath(click.ParamType):
    """A built-in corpus name (``shakespeare``) or an existing text file; the name is kept as given."""
    name = "NAME|FILE"

    def convert(self, value, param, ctx):
        from ..steps.data import BUILTIN_CORPORA, corpus_path
        path = corpus_path(value)
        if not path.is_file():
            self.fail(f"corpus {value!r} is neither a built-in name ({', '.join(BUILTIN_CORPORA)}) "
                      "nor an existing file", param, ctx)
        return str(value)


def parse_sets(items) -> dict:
    """``--set depth=20 --set vocab=256`` -> {"depth": "20", "vocab": "256"} (the model checks values)."""
    out = {}
    for it in items:
        if "=" not in it:
            raise click.BadParameter(f"--set {it!r} must look like NAME=VALUE")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def knob_options(f):
    """--batch, --seq-len and --set NAME=VALUE for model knobs."""
    f = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                     help="other model knob, e.g. --set depth=20 (see `perfmodel models`)")(f)
    f = click.option("--seq-len", type=int, default=None, help="sequence length (model default)")(f)
    f = click.option("--batch", type=int, default=None, help="batch size (model default)")(f)
    return f


def dtype_option(choices=DTYPES):
    """--dtype, one of ``choices`` (default fp32)."""
    return click.option("--dtype", default="fp32", show_default=True, type=click.Choice(list(choices)))


def optimizer_option(choices=PRICED_OPTIMIZERS, default: str = "sgd"):
    """--optimizer, one of ``choices``."""
    return click.option("--optimizer", default=default, show_default=True, type=click.Choice(list(choices)))


def _no_recompute(ctx, param, value):
    """``--no-recompute``: the old switch, an alias of ``--recompute none`` (the later one wins)."""
    if value:
        ctx.params["recompute"] = "none"


def parallel_options(f):
    """Switches shared by predict, plan and whatif (kernel parallelism, schedule, all-reduce, ZeRO,
    Megatron's sequence parallelism / recomputation / interleaving, expert parallelism)."""
    opts = [
        click.option("--persistent-rnn/--no-persistent-rnn", default=False, show_default=True,
                     help="persistent RNN kernels keep recurrent weights on chip when they fit"),
        click.option("--streams/--no-streams", default=False, show_default=True,
                     help="run independent kernels (RNN directions) concurrently on two streams"),
        click.option("--recompute", type=str, is_flag=False, flag_value="full", default="none", show_default=True,
                     metavar="none|selective|full", help="activation recomputation: selective = the attention "
                     "core only (Korthikanti et al. 2022); full = per layer unit (--recompute alone: full)"),
        click.option("--no-recompute", is_flag=True, expose_value=False, callback=_no_recompute,
                     help="alias of --recompute none"),
        click.option("--recompute-every", type=int, default=1, show_default=True, metavar="K",
                     help="with --recompute full: checkpoint only every K-th transformer block (torchtitan's "
                          "selective layer AC, ac_freq)"),
        click.option("--zero", type=int, default=0, show_default=True, metavar="0|1|2|3",
                     help="ZeRO stage over the data-parallel group: 1 optimizer state, 2 + gradients, "
                          "3 + parameters sharded (FSDP full shard)"),
        click.option("--zero3-gather", type=click.Choice(["unit", "module"]), default="unit", show_default=True,
                     help="what ZeRO-3 gathers at a time: a layer unit (FSDP's per-block wrap) or one module's "
                          "parameters (DeepSpeed stage 3)"),
        click.option("--sequence-parallel/--no-sequence-parallel", default=False, show_default=True,
                     help="Megatron sequence parallelism: norms and residuals split across the tp group"),
        click.option("--virtual-stages", type=int, default=1, show_default=True,
                     help="model chunks per pipeline rank (interleaved 1F1B); must divide the layers per stage"),
        click.option("--ep", type=int, default=1, show_default=True,
                     help="expert-parallel degree (MoE); must divide the experts and dp"),
        click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="1f1b", show_default=True),
        click.option("--allreduce", type=click.Choice(list(ALGORITHMS)), default="ring", show_default=True),
        click.option("--overlap/--no-overlap", default=True, show_default=True,
                     help="overlap the gradient all-reduce with the backward pass (bucketed)"),
        click.option("--bucket-mib", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
                     help="gradient bucket size (PyTorch DDP default 25 MiB)"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build_options(persistent_rnn, streams, recompute, schedule, allreduce, overlap, bucket_mib, zero=0,
                  sequence_parallel=False, virtual_stages=1, ep=1, zero3_gather="unit", recompute_every=1,
                  searched=False):
    """The :class:`perfmodel.parallel.options.ParallelOptions` of :func:`parallel_options`' values
    (``searched``: plan's --search-options picks the ZeRO stage itself)."""
    from ..errors import PerfmodelError
    from ..parallel.kernel_parallel import KernelOptions
    from ..parallel.options import ParallelOptions
    if zero3_gather != "unit" and zero != 3 and not searched:
        raise PerfmodelError(f"--zero3-gather {zero3_gather} is not allowed with --zero {zero}: it says what "
                             "ZeRO stage 3 gathers; give --zero 3 (or plan --search-options)")
    if recompute_every != 1 and recompute != "full" and not searched:
        raise PerfmodelError(f"--recompute-every {recompute_every} is not allowed with --recompute {recompute}: it "
                             "says which blocks full recomputation checkpoints; give --recompute full")
    return ParallelOptions(schedule, allreduce, bucket_mib * 2**20, overlap, recompute,
                           KernelOptions(streams=streams, persistent_rnn=persistent_rnn), zero, sequence_parallel,
                           virtual_stages, ep, zero3_gather=zero3_gather, recompute_every=recompute_every)


def collect_knobs(batch, seq_len, sets) -> dict:
    """The knobs of --batch, --seq-len and --set; a knob given twice (--batch 4 --set batch=8) is refused."""
    knobs = parse_sets(sets)
    for name, v in (("batch", batch), ("seq_len", seq_len)):
        if v is None:
            continue
        if name in knobs:
            flag = "--" + name.replace("_", "-")
            raise PerfmodelError(f"{flag} {v} and --set {name}={knobs[name]} both give {name}: give it once")
        knobs[name] = v
    return knobs


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, default=_plain)


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: _plain(v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


def output_format(f):
    """--json and --csv (one of them: both together are refused before any work)."""
    @functools.wraps(f)
    def command(*args, **kwargs):
        if kwargs.get("as_json") and kwargs.get("as_csv"):
            raise PerfmodelError("--json and --csv are not allowed together: they choose conflicting outputs; "
                                 "give one of them")
        return f(*args, **kwargs)
    command = click.option("--csv", "as_csv", is_flag=True, help="print CSV (not with --json)")(command)
    return click.option("--json", "as_json", is_flag=True, help="print JSON (not with --csv)")(command)
