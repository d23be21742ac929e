"""One device's share of a training step, per layer unit, vectorized over configurations.

A configuration is (width, micro-batch, tensor-parallel degree); all three
are NumPy arrays of one common length L, so one pass over the op graph costs
every configuration at once (the layout search calls this twice: T = 1 with
the fused, possibly calibrated RNN ops, and all T > 1 together).

Ops are grouped into *units* by the first two components of their path
(``blocks/3``, ``lstm/l0``, ``rhn/depth4``, ``embedding``): a unit is what a
pipeline stage boundary may not cut.  Per unit and configuration this gives
forward and backward seconds, tensor-parallel collective seconds, optimizer
seconds, saved activation bytes, the bytes of its output activation (what a
pipeline stage sends on), and parameters per device.

Recurrence structure, derived from the ops: consecutive forward ops executed
once per timestep (``repeat > 1``, e.g. the RHN's recurrence depth) form a
time loop; a fused RNN op is a time loop of its own.  ``steps`` is the loop
length when every recurrence is unidirectional (a pipeline can then stream
timesteps, the wavefront across layers and time), else 1; ``cyclic`` says a
loop spans several units, so a stage boundary inside it closes a cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..architectures import check_size, check_width, get_spec
from ..architectures.attention import is_attention_core
from ..cost.step_cost import op_costs
from ..errors import PerfmodelError
from ..graph import ModelGraph, optimizer_op
from ..ops import DTYPE_BYTES, Op, OpKind
from ..scenario import Scenario
from ..units import ceil_div
from . import collectives as coll
from .expert import alltoall_bytes, is_expert_group, split_experts
from .kernel_parallel import op_times
from .tensor import split as tensor_split


def unit_key(path: str) -> str:
    return "/".join(path.split("/")[:2])


def annotate_loops(graph: ModelGraph) -> ModelGraph:
    """``graph`` with consecutive per-timestep ops marked as one recurrence (``meta recurrence/role``),
    in listing order (:meth:`ModelGraph.listed_ops`: a backward-only op runs in its forward op's loop)."""
    loop = None

    def mark(op: Op) -> Op:
        nonlocal loop
        if op.kind == OpKind.RNN or not bool(np.any(np.asarray(op.repeat) > 1)):
            loop = None
            return op
        loop = loop or f"loop:{op.path}"
        role = "recurrent_gemm" if op.kind == OpKind.GEMM and op.attrs.get("weight") == "b" else "cell"
        return replace(op, meta={**op.meta, "recurrence": loop, "role": role})

    fwd, backward_only = [], {}
    for op in graph.fwd:
        fwd.append(mark(op))
        if op.path in graph.backward_only:
            backward_only[op.path] = [mark(b) for b in graph.backward_only[op.path]]
    return replace(graph, fwd=fwd, backward_only=backward_only)


@dataclass
class UnitCosts:
    """Arrays of shape (units, L) unless noted; seconds and bytes per micro-batch on one device."""

    names: list
    fwd_s: np.ndarray
    bwd_s: np.ndarray
    tp_fwd_s: np.ndarray
    tp_bwd_s: np.ndarray
    opt_s: np.ndarray
    act_bytes: np.ndarray
    out_bytes: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    fwd_flops: np.ndarray
    ep_fwd_s: np.ndarray       # expert-parallel all-to-alls (:mod:`.expert`)
    ep_bwd_s: np.ndarray
    expert_params: np.ndarray  # the part of ``params`` in expert groups (sharded over ep)
    max_group_params: np.ndarray  # the unit's largest parameter group (one layer's weights: a module)
    core_fwd_s: np.ndarray     # forward of the attention core (what selective recomputation reruns)
    core_fwd_flops: np.ndarray
    core_act_bytes: np.ndarray  # ... and the activations it keeps
    params_total: np.ndarray   # (L,) the whole model's parameter count
    valid: np.ndarray          # (L,) every tensor-parallel split dimension >= T
    persistent: np.ndarray     # (L,) a persistent RNN kernel applies somewhere
    steps: int = 1
    cyclic: bool = False
    tied: tuple = ()           # (unit of a reused weight, unit reusing it) pairs (``ModelGraph.tied``)

    @property
    def size(self) -> int:
        return self.fwd_s.shape[1]


def _recurrence(fwd_ops: list[Op]):
    """(steps, cyclic) from the loop annotation and fused RNN ops."""
    loops: dict = {}
    steps, bidirectional = 1, False
    for op in fwd_ops:
        if op.kind == OpKind.RNN:
            steps = max(steps, int(np.max(op.dims["steps"])))
            bidirectional |= op.meta.get("directions", 1) > 1
        elif "recurrence" in op.meta:
            loops.setdefault(op.meta["recurrence"], set()).add(unit_key(op.path))
            steps = max(steps, int(np.max(op.repeat)))
    cyclic = any(len(u) > 1 for u in loops.values())
    return (1 if bidirectional else steps), cyclic


def build_fwd(model: str, widths, micro_batch, dtype: str, knobs: dict):
    """The model's graph at ``widths`` with the per-device ``micro_batch`` (arrays allowed)."""
    spec = get_spec(model)
    check_width(widths)
    resolved = {**spec.resolve({k: v for k, v in knobs.items() if k != "batch"}), "batch": micro_batch}
    check_size(spec, widths, dtype, resolved)  # int64 counts: refused past the bounds, never wrapped
    graph = spec.build(widths, dtype=dtype, **resolved)
    return graph


def device_pass(scenario: Scenario, widths, micro_batch, tp) -> UnitCosts:
    """Cost every unit of ``scenario``'s model for each configuration (arrays ``widths, micro_batch, tp``);
    the scenario's ``sequence_parallel`` and ``ep`` options apply (:mod:`.tensor`, :mod:`.expert`)."""
    opts = scenario.options
    hw, kernel, algorithm = scenario.hardware, opts.kernel, opts.algorithm
    widths = np.asarray(widths, dtype=np.int64)
    mb = np.broadcast_to(np.asarray(micro_batch, dtype=np.int64), widths.shape)
    tpa = np.broadcast_to(np.asarray(tp, dtype=np.int64), widths.shape)
    if (mb < 1).any():
        raise PerfmodelError(f"micro-batch {int(mb[mb < 1][0])} is not allowed; it must be >= 1")
    graph = annotate_loops(build_fwd(scenario.model, widths, mb, scenario.dtype, scenario.knobs))
    graph = split_experts(graph, opts.ep)
    single = bool((tpa == 1).all())
    ts = tensor_split(graph, 1 if single else tpa, opts.sequence_parallel and not single)
    a2a = alltoall_bytes(graph, tpa, opts.sequence_parallel) if opts.ep > 1 else {}
    units: list[str] = []
    for item in ts.items:
        if unit_key(item.path) not in units:
            units.append(unit_key(item.path))
    for g in graph.param_groups:
        if unit_key(g) not in units:
            units.append(unit_key(g))
    idx = {u: i for i, u in enumerate(units)}
    shape = (len(units), widths.size)
    acc = {k: np.zeros(shape) for k in ("fwd_s", "bwd_s", "tp_fwd_s", "tp_bwd_s", "opt_s", "act_bytes",
                                        "out_bytes", "params", "flops", "fwd_flops", "ep_fwd_s", "ep_bwd_s",
                                        "expert_params", "max_group_params", "core_fwd_s", "core_fwd_flops",
                                        "core_act_bytes")}
    all_ops = [op for item in ts.items for op in item.ops]
    times, flops = [], []
    for c in op_costs(all_ops, hw):
        times.append(c.time_s)
        flops.append(c.flops)
    times, fits = op_times(all_ops, hw, kernel, times)
    tp_link = coll.link(hw, coll.spans_nodes(hw, tpa))
    ep_link = coll.link(hw, coll.spans_nodes(hw, opts.ep, tpa))
    k = 0
    for item, src in zip(ts.items, graph.fwd, strict=False):
        u = idx[unit_key(item.path)]
        for op in item.ops:
            acc["fwd_s" if op.phase == "fwd" else "bwd_s"][u] += times[k]
            acc["flops"][u] += flops[k]
            if op.phase == "fwd":
                acc["fwd_flops"][u] += flops[k]
            if op.phase == "fwd" and op.saved:
                acc["act_bytes"][u] += op.out_bytes * op.repeat
            if op.phase == "fwd" and is_attention_core(op.path):
                acc["core_fwd_s"][u] += times[k]
                acc["core_fwd_flops"][u] += flops[k]
                acc["core_act_bytes"][u] += op.out_bytes * op.repeat if op.saved else 0
            k += 1
        if item.path in a2a:
            t = coll.alltoall_s(a2a[item.path], opts.ep, ep_link)
            acc["ep_fwd_s"][u] += t
            acc["ep_bwd_s"][u] += t
        for c in item.comm:
            t = coll.collective_s(c.kind, c.nbytes, tpa, tp_link, algorithm) * c.repeat
            acc["tp_fwd_s" if c.phase == "fwd" else "tp_bwd_s"][u] += t
        acc["out_bytes"][u] = _output_bytes(src, item.out_sharded, tpa)
    groups_per_unit: dict = {}
    for g, count in graph.param_groups.items():
        u = idx[unit_key(g)]
        group = ceil_div(np.asarray(count), ts.param_divisor(g, tpa))
        acc["params"][u] += group
        acc["max_group_params"][u] = np.maximum(acc["max_group_params"][u], group)
        if is_expert_group(g):
            acc["expert_params"][u] += ceil_div(np.asarray(count), ts.param_divisor(g, tpa))
        groups_per_unit[u] = groups_per_unit.get(u, 0) + 1
    opt_units = list(groups_per_unit)
    opt_ops = [optimizer_op(acc["params"][u], groups_per_unit[u], scenario.optimizer, f"{units[u]}/optimizer")
               for u in opt_units]
    for u, c in zip(opt_units, op_costs(opt_ops, hw), strict=True):
        acc["opt_s"][u] = c.time_s
    steps, cyclic = _recurrence(graph.listed_ops())
    persistent = np.zeros(widths.shape, bool)
    for f in fits.values():
        persistent |= np.broadcast_to(f, widths.shape)
    tied = tuple((idx[unit_key(group)], idx[unit_key(path)]) for path, group in graph.tied.items()
                 if unit_key(group) != unit_key(path))
    return UnitCosts(units, **acc, params_total=np.broadcast_to(graph.params, widths.shape),
                     valid=np.broadcast_to(ts.valid, widths.shape), persistent=persistent,
                     steps=steps, cyclic=cyclic, tied=tied)


def _output_bytes(op: Op, sharded, tp):
    """Bytes of the activation a unit hands to the next one (a fused RNN: its hidden sequence; a
    pointwise op: its first output, not the dropout mask it also writes and keeps for itself)."""
    d = op.dims
    if op.kind == OpKind.RNN:
        full = d["steps"] * d["batch"] * d["hidden"] * DTYPE_BYTES[op.dtype]
    elif "n_out" in d:
        full = d["numel"] * np.minimum(d["n_out"], 1) * DTYPE_BYTES[op.dtype] * op.repeat
    else:
        full = op.out_bytes * op.repeat
    return np.where(sharded, ceil_div(full, tp), full)
