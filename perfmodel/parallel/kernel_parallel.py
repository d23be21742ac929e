"""Kernel parallelism inside one device: concurrent streams and persistent RNN kernels.

Wave quantization and SM occupancy of single kernels live in
:mod:`perfmodel.cost.waves` and are part of every op's time.  This module
adds two switches on top (both off by default, so their gain is visible):

Concurrent streams (``streams``)
    Independent kernels -- the two directions of a bidirectional RNN, ops
    whose ``meta["direction"]`` differ under the same layer -- run on two
    CUDA streams and share the SMs.  Per pair of executions, with compute
    time C (including wave-quantization loss), C_full (the same FLOPs at
    full occupancy: ``flops / (peak * gemm_max)``, times the profile's ``in_step_fraction`` for a
    GEMM where it has one), memory time M and launch
    overhead O::

        t_pair = max(max(C_a, M_a), max(C_b, M_b), max(C_full_a + C_full_b, M_a + M_b)) + O_a + O_b

    i.e. a pair is never faster than its slower member nor than the device's
    throughput for both, and launches stay serial on the host.  The builders
    fuse an LSTM's gates into one GEMM, so "independent gates" have no
    separate kernels to overlap here.

Persistent RNN kernels (``persistent_rnn``; Diamos et al. 2016, "Persistent
RNNs: Stashing Recurrent Weights On-Chip", ICML, PMLR 48:2024-2033)
    One kernel runs all timesteps with the recurrent weights held in the
    register files and shared memory of all SMs.  It applies to a
    recurrence (a fused RNN layer, or a loop of per-timestep ops such as the
    RHN's recurrence depth) when all its recurrent weights on one device fit::

        weights = sum of k*n*dtype bytes of the recurrence's per-timestep weight GEMMs
        fits    = weights <= sm_count * (register_file + shared_memory per SM) * onchip_fraction

    In the forward and backward-data passes each per-timestep GEMM then reads
    no weights from DRAM and, its work spread over every SM, loses nothing to
    wave quantization (C = C_full); each step keeps one grid-wide barrier,
    costed as one kernel launch; the cell's pointwise kernels are fused into
    the same kernel (no launches).  Weight-gradient GEMMs are unchanged.
    ``onchip_fraction`` (assumption, default 0.75) leaves room for the
    activations, accumulators and addressing the kernel also keeps on chip.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..cost.op_time import op_time
from ..cost.roofline import memory_time
from ..cost.step_cost import op_costs
from ..hardware import HardwareProfile
from ..ops import DTYPE_BYTES, Op, OpKind, rnn_components

PERSISTENT_PHASES = ("fwd", "bwd_data")


@dataclass(frozen=True)
class KernelOptions:
    streams: bool = False
    persistent_rnn: bool = False
    onchip_fraction: float = 0.75  # assumption: share of registers + shared memory free for weights


def onchip_bytes(hw: HardwareProfile, opts: KernelOptions) -> float:
    """Bytes of recurrent weights a persistent kernel can hold on ``hw``."""
    per_sm = (hw.register_file_KiB_per_sm + hw.shared_memory_KiB_per_sm) * 1024
    return hw.sm_count * per_sm * opts.onchip_fraction


@dataclass(frozen=True)
class _Parts:
    """One execution: compute (with wave loss), memory, overhead, compute at full occupancy."""

    c: object
    m: object
    o: object
    c_full: object

    @property
    def time(self):
        return np.maximum(self.c, self.m) + self.o


def _full_compute(op: Op, hw: HardwareProfile, c):
    if op.kind not in (OpKind.GEMM, OpKind.CONV2D) or hw.kind != "gpu":
        return c
    eff = hw.efficiency["gemm_max" if op.kind == OpKind.GEMM else "conv_max"]
    if op.kind == OpKind.GEMM and hw.in_step_fraction is not None:  # as op_time prices a GEMM in a step
        eff = eff * hw.in_step_fraction
    return np.minimum(c, op.flops / (hw.peak_flops(op.dtype) * eff))


def _parts(op: Op, hw: HardwareProfile) -> _Parts:
    t = op_time(op, hw)
    return _Parts(t.compute_s, t.memory_s, t.overhead_s, _full_compute(op, hw, t.compute_s))


def _weight_bytes(op: Op):
    return op.dims["k"] * op.dims["n"] * DTYPE_BYTES[op.dtype]


def _persistent(op: Op, p: _Parts, hw: HardwareProfile) -> _Parts:
    """The same execution inside a persistent kernel (weights on chip, cell fused)."""
    role = op.meta.get("role")
    if op.phase not in PERSISTENT_PHASES:
        return p
    if role == "recurrent_gemm" and op.kind == OpKind.GEMM:
        return _Parts(p.c_full, memory_time(hw, np.maximum(op.bytes - _weight_bytes(op), 0), op.kind), p.o,
                      p.c_full)
    if role == "cell":
        return _Parts(p.c, p.m, 0 * p.o, p.c_full)
    return p


def _pair(a: _Parts, b: _Parts):
    both = np.maximum(a.c_full + b.c_full, a.m + b.m)
    return np.maximum(np.maximum(np.maximum(a.c, a.m), np.maximum(b.c, b.m)), both) + a.o + b.o


def recurrent_weight_bytes(ops: list[Op]) -> dict:
    """Recurrence id -> bytes of its per-timestep weights on one device (forward GEMMs)."""
    out: dict = {}
    for op in ops:
        if op.kind == OpKind.RNN and op.phase == "fwd":
            rec = [c for c in rnn_components(op) if c.path.endswith("recurrent_gemm")]
            out[op.path] = sum(_weight_bytes(c) for c in rec)
        elif op.meta.get("role") == "recurrent_gemm" and op.phase == "fwd":
            key = op.meta["recurrence"]
            out[key] = out.get(key, 0) + _weight_bytes(op)
    return out


def _rnn_components_meta(op: Op):
    return [replace(c, meta={**c.meta, "recurrence": op.path, "role": c.path.rsplit("/", 1)[-1]})
            for c in rnn_components(op)]


def op_times(ops: list[Op], hw: HardwareProfile, opts: KernelOptions = KernelOptions(),
             times: list | None = None):
    """Seconds per step of each op (``time x repeat``: :func:`perfmodel.cost.step_cost.op_costs`,
    or ``times`` when the caller has them), with the switches of ``opts`` applied.

    Returns ``(times, persistent_fits)``: a list aligned with ``ops`` and a dict
    recurrence id -> bool (array) of where the persistent kernel applies.
    """
    times = [c.time_s for c in op_costs(ops, hw)] if times is None else list(times)
    capacity = onchip_bytes(hw, opts)
    fits = {k: np.asarray(v) <= capacity for k, v in recurrent_weight_bytes(ops).items()} \
        if opts.persistent_rnn else {}

    def switched(op: Op, p: _Parts) -> _Parts:  # inside a persistent kernel where its recurrence fits
        key = op.meta.get("recurrence")
        if key in fits:
            q = _persistent(op, p, hw)
            p = _Parts(*(np.where(fits[key], x, y) for x, y in zip((q.c, q.m, q.o, q.c_full),
                                                                 (p.c, p.m, p.o, p.c_full), strict=True)))
        return p

    def parts(i: int) -> _Parts:  # op i of the list, one execution
        return switched(ops[i], _parts(ops[i], hw))

    def comps(op):  # a fused RNN op as (component, parts) with the switches applied
        return [(c, switched(c, _parts(c, hw))) for c in _rnn_components_meta(op)]

    for i, op in enumerate(ops):
        if op.kind == OpKind.RNN and op.path in fits:
            cs = comps(op)
            analytic = sum(_parts(c, hw).time * c.repeat for c, _ in cs)
            base = op_time(op, hw).time_s  # measured layer time when the profile is calibrated
            times[i] = base * sum(p.time * c.repeat for c, p in cs) / analytic * op.repeat
        elif op.kind != OpKind.RNN and op.meta.get("recurrence") in fits:
            times[i] = parts(i).time * op.repeat
    if opts.streams:
        _overlap_directions(ops, times, parts, comps)
    return times, fits


def _direction_key(op: Op):
    d = op.meta.get("direction")
    if d is None or op.meta.get("directions", 1) < 2:
        return None
    parent = op.meta.get("recurrence", op.path)
    parent = parent.rsplit("/", 1)[0]
    return parent, op.phase, op.meta.get("role", ""), op.kind, d


def _overlap_directions(ops, times, parts, comps) -> None:
    """Replace each (direction 0, direction 1) pair's serial time by its concurrent time, half each."""
    index = {}
    for i, op in enumerate(ops):
        key = _direction_key(op)
        if key is not None:
            index.setdefault(key[:4], {})[key[4]] = i
    for pair in index.values():
        if 0 not in pair or 1 not in pair:
            continue
        i, j = pair[0], pair[1]
        a, b = ops[i], ops[j]
        if a.kind == OpKind.RNN:
            ca, cb = comps(a), comps(b)
            serial = sum(p.time * c.repeat for c, p in ca) + sum(p.time * c.repeat for c, p in cb)
            together = sum(_pair(pa, pb) * c.repeat for (c, pa), (_, pb) in zip(ca, cb, strict=True))
            total = (times[i] + times[j]) * together / serial
        else:
            total = _pair(parts(i), parts(j)) * a.repeat
        times[i] = times[j] = total / 2
