"""Analytic roofline: op + hardware profile -> seconds, from rates and datasheet figures.

Per op execution (the roofline model: Williams, Waterman & Patterson, "Roofline: an
insightful visual performance model for multicore architectures", CACM 52(4), 2009)::

    compute_s  = flops / (peak_flops[dtype] * efficiency(op))
    memory_s   = bytes / bandwidth(bytes)
    time_s     = max(compute_s, memory_s) + overhead_s
    overhead_s = kernels * per_kernel_overhead (+ first-touch page faults of a fresh output)
                 (the optimizer op also carries the step's fixed per-call costs:
                 one backward() call and one optimizer call, when calibrated)

``efficiency`` and ``bandwidth`` come from the profile: the calibrated rates when it
has them (:mod:`perfmodel.cost.rates`), otherwise the datasheet fractions.

* GEMM: the calibrated efficiency, else ``efficiency.gemm_max`` times the GPU
  wave-quantization factor (:mod:`perfmodel.cost.waves`).
* Conv2d: its implicit GEMM (:func:`perfmodel.ops.conv_gemm_dims`) at the GEMM
  table's efficiency, else ``efficiency.conv_max`` (times the wave factor on a
  GPU); on a GPU the faster of that and Winograd (:mod:`perfmodel.cost.conv_algos`).
* Pointwise work (elementwise, reductions, losses, embeddings, optimizer updates):
  the vector units at ``peak_flops["fp32"] * efficiency.elementwise_max``.
* Memory: the calibrated curve, else ``memory_bandwidth * efficiency.memory_max``.
* A fused RNN layer: the sum of its GEMMs and cell kernels (:func:`perfmodel.ops.rnn_components`).
* FlashAttention-2 (:mod:`perfmodel.ops_flash`; an earlier kernel at its relative rate): its GEMM
  FLOPs at ``efficiency.attention_max``
  (the kernel's measured matmul rate, softmax included) where the profile has it, else at the GEMM
  efficiency plus its softmax FLOPs on the vector units; memory is its HBM traffic, the tiled
  re-reads served from L2 where the heads in flight fit there (:func:`perfmodel.ops_flash.flash_hbm_bytes`).

Measured residuals of conv and RNN layers are not applied here: they scale this
analytic time in :mod:`perfmodel.cost.residuals`, composed in :mod:`perfmodel.cost.op_time`.
Every function accepts scalar or array dims.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import HardwareProfile
from ..ops import Op, OpKind, conv_gemm_dims, rnn_components
from ..ops_flash import flash_flops, flash_hbm_bytes, flash_output_tensors, relative_rate
from . import rates
from .conv_algos import winograd_applies, winograd_parts
from .waves import gemm_wave_efficiency

BOUNDS = ("compute", "memory", "overhead")


def overlap(compute_s, memory_s):
    """Compute and memory traffic of one kernel overlap: the slower one sets the time."""
    return np.maximum(compute_s, memory_s)


@dataclass(frozen=True)
class OpTime:
    """Seconds for one execution of an op (arrays in vectorized sweeps)."""

    compute_s: object
    memory_s: object
    overhead_s: object
    time_s: object

    @property
    def bound(self):
        """'compute', 'memory' or 'overhead': the largest of the three parts."""
        parts = np.stack(np.broadcast_arrays(self.compute_s, self.memory_s, self.overhead_s))
        return np.asarray(BOUNDS)[np.argmax(parts, axis=0)]


def gemm_layout(op: Op):
    """``(m, n, k, trans_a, trans_b)`` of the kernel the framework launches for a GEMM op.

    Forward ops carry their layout (``nn.Linear``: ``x @ W^T``, trans_b).  The
    backward GEMMs autograd launches for ``C = A @ B`` (torch ``mm``/``bmm``
    backward) are ``dA = dC @ B^T`` -- B's layout flipped -- and
    ``dB = A^T @ dC`` -- A transposed; a weight stored transposed (``W = B^T``)
    gets ``dW = dC^T @ A``, i.e. M and N of the IR's ``dB`` swapped.  Ops that
    state ``trans_a`` themselves are taken as they are.
    """
    d, a = op.dims, op.attrs
    m, n, k, tb = d["m"], d["n"], d["k"], bool(a.get("trans_b", False))
    if "trans_a" in a or op.phase == "fwd":
        return m, n, k, bool(a.get("trans_a", False)), tb
    grad_of_b = op.phase == "bwd_weight" or op.path.endswith("/grad_b")
    if not grad_of_b:
        return m, n, k, False, not tb
    return (n, m, k, True, False) if tb else (m, n, k, True, False)


def gemm_efficiency(hw: HardwareProfile, dtype, m, n, k, batch=1, trans_b=False, trans_a=False):
    """Fraction of the dtype's peak a GEMM reaches on ``hw``."""
    cal = rates.gemm_efficiency(hw, dtype, m, n, k, batch, trans_b, trans_a)
    if cal is not None:
        return cal
    eff = hw.efficiency["gemm_max"]
    if hw.kind == "gpu":
        eff = eff * gemm_wave_efficiency(hw, m, n, batch, k)
    return eff


def op_curve(op: Op) -> str | None:
    """The measured curve of ``op``'s own kernel, if it names one: ``meta["curve"]`` forward,
    ``<curve>_bwd`` in the backward phases (``hardware.calibration.LAYER_CURVES``)."""
    curve = op.meta.get("curve")
    return None if curve is None else (curve if op.phase == "fwd" else f"{curve}_bwd")


def memory_time(hw: HardwareProfile, nbytes, kind: str | None = None, curve: str | None = None):
    """Seconds to move ``nbytes`` in one kernel: ``nbytes / bandwidth``."""
    bw = rates.bandwidth_Bps(hw, nbytes, kind, curve)
    if bw is None:
        bw = hw.memory_bandwidth_Bps * hw.efficiency["memory_max"]
    return nbytes / bw


def per_kernel_overhead_s(hw: HardwareProfile, kind: str):
    """Fixed seconds of one kernel of ``kind``: calibrated, else the profile's launch overhead."""
    cal = rates.overhead_s(hw, kind)
    return hw.launch_overhead_s if cal is None else cal


def hot_weight_efficiency(op: Op, hw: HardwareProfile, m, n, k, trans_a, trans_b):
    """On a CPU, a GEMM run several times in a step with the same weight (``repeat`` > 1: the time
    steps of a recurrence) in its forward or data-gradient phase finds that weight in cache: the
    hot-operand points' efficiency (``perfmodel.calibrate.gemm``, ``hot``) where they cover the
    shape (NaN where they do not); None when the rule does not apply (the cold table does)."""
    if hw.kind != "cpu" or op.phase not in ("fwd", "bwd_data") or op.attrs.get("weight") != "b" \
            or np.ndim(op.repeat) or op.repeat <= 1 or op.dims.get("batch", 1) != 1:
        return None
    return rates.hot_gemm_efficiency(hw, op.dtype, m, n, k, trans_b, trans_a)


def compute_time(op: Op, hw: HardwareProfile):
    """Analytic compute seconds of one execution of a (non-RNN) op."""
    d, flops = op.dims, op.flops
    if op.kind == OpKind.GEMM:
        m, n, k, trans_a, trans_b = gemm_layout(op)
        eff = gemm_efficiency(hw, op.dtype, m, n, k, d.get("batch", 1), trans_b, trans_a)
        hot = hot_weight_efficiency(op, hw, m, n, k, trans_a, trans_b)
        if hot is not None:   # in cache where the hot points cover the shape (NaN elsewhere)
            eff = np.where(np.isnan(hot), eff, hot)[()]
        return flops / (hw.peak_flops(op.dtype) * eff)
    if op.kind == OpKind.CONV2D:
        return conv_compute_s(op, hw)
    if op.kind == OpKind.ATTENTION:
        return attention_compute_s(op, hw)
    # pointwise work runs on the vector units at the fp32 rate
    return flops / (hw.peak_flops("fp32") * hw.efficiency["elementwise_max"])


def attention_compute_s(op: Op, hw: HardwareProfile):
    """Compute seconds of a FlashAttention-2 phase (:mod:`perfmodel.ops_flash`): its GEMM FLOPs at the
    efficiency of the batched ``[T x d] @ [d x T]`` GEMM (batch x heads of them), plus its softmax FLOPs
    on the vector units."""
    d = op.dims
    gemm, softmax = flash_flops(op)
    slower = 1 / relative_rate(op)   # an earlier kernel than FlashAttention-2 (ops_flash.KERNEL_RELATIVE_RATE)
    if "attention_max" in hw.efficiency:
        return slower * gemm / (hw.peak_flops(op.dtype) * hw.efficiency["attention_max"])
    eff = gemm_efficiency(hw, op.dtype, d["seq"], d["seq"], d["head_dim"], d["batch"] * d["heads"])
    return slower * (gemm / (hw.peak_flops(op.dtype) * eff)
                     + softmax / (hw.peak_flops("fp32") * hw.efficiency["elementwise_max"]))


def conv_compute_s(op: Op, hw: HardwareProfile):
    """Analytic compute seconds of a conv2d phase: its implicit GEMM at the GEMM table's (else the
    datasheet conv) efficiency; on a GPU the faster of that and Winograd, as the library's
    algorithm search picks."""
    m, n, k = conv_gemm_dims(op)
    eff = rates.gemm_efficiency(hw, op.dtype, m, n, k, 1, False)
    if eff is None:
        eff = hw.efficiency["conv_max"]
        if hw.kind == "gpu":
            eff = eff * gemm_wave_efficiency(hw, m, n, 1, k)
    implicit = op.flops / (hw.peak_flops(op.dtype) * eff)
    if hw.kind == "gpu" and winograd_applies(op.dims):
        gemm, transform_bytes = winograd_parts(op)
        return np.minimum(implicit, compute_time(gemm, hw) + memory_time(hw, transform_bytes))
    return implicit


def roofline_time(op: Op, hw: HardwareProfile, compute_s=None) -> OpTime:
    """Analytic time of one execution of ``op``; ``compute_s``, when given, replaces the analytic
    compute part (the caller passes a measured one)."""
    if op.kind == OpKind.RNN:
        return rnn_roofline(op, hw)[0]
    compute = compute_time(op, hw) if compute_s is None else compute_s
    memory = memory_time(hw, _hbm_bytes(op, hw), op.kind, op_curve(op))
    kernels = op.meta.get("kernels", 1)
    overhead = kernels * per_kernel_overhead_s(hw, op.kind) + 0 * compute
    if op.kind == OpKind.OPTIMIZER:  # once per training step (calibrated per-call costs)
        calls = rates.step_calls_s(hw)
        overhead = overhead if calls is None else overhead + calls
    fresh = fresh_output_bytes(op, hw)
    if fresh is not None:
        overhead = overhead + fresh * hw.calibration["allocation"]["first_touch_s_per_byte"]
    return OpTime(compute, memory, overhead, overlap(compute, memory) + overhead)


def _hbm_bytes(op: Op, hw: HardwareProfile):
    """Bytes ``op`` moves through DRAM: its IR bytes, FlashAttention's L2-served re-reads aside on a GPU."""
    if op.kind == OpKind.ATTENTION and hw.kind == "gpu":
        return sum(flash_hbm_bytes(op, hw.l2_cache_MiB * 2**20, hw.sm_count))
    return op.bytes


def fresh_output_bytes(op: Op, hw: HardwareProfile):
    """Bytes of ``op``'s output written to pages the OS must fault in first (CPU profiles with an
    ``allocation`` calibration; None otherwise).  In-place updates allocate nothing."""
    if op.kind == OpKind.OPTIMIZER or op.meta.get("backward_only"):
        return None
    if op.kind == OpKind.ATTENTION:   # several tensors, each tested against the threshold on its own
        parts = [rates.fresh_bytes(hw, b) for b in flash_output_tensors(op)]
        return None if parts[0] is None else sum(parts)
    return rates.fresh_bytes(hw, op.out_bytes)


def is_rnn_input_gemm(component: Op) -> bool:
    """The input GEMM over all steps (or one of its gradients) among ``ops.rnn_components``."""
    return component.path.endswith("/input_gemm")


def _input_recurrent(timed) -> tuple[float, float]:
    """Sum ``(component, seconds)`` pairs into (input GEMM, everything else), repeats included."""
    split = [0.0, 0.0]
    for c, seconds in timed:
        split[0 if is_rnn_input_gemm(c) else 1] += seconds * c.repeat
    return split[0], split[1]


def rnn_components_split(op: Op, hw: HardwareProfile) -> tuple[float, float]:
    """Seconds of a fused RNN layer phase costed as its GEMMs and cell kernels (``ops.rnn_components``),
    as (input GEMM over all steps -- one ordinary GEMM --, recurrent part: per-step GEMMs and cell math)."""
    return _input_recurrent((c, roofline_time(c, hw).time_s) for c in rnn_components(op))


def rnn_components_time(op: Op, hw: HardwareProfile) -> float:
    """Seconds of a fused RNN layer phase costed as its GEMMs and cell kernels, both parts."""
    return sum(rnn_components_split(op, hw))


def rnn_roofline(op: Op, hw: HardwareProfile) -> tuple[OpTime, tuple[float, float]]:
    """A fused RNN layer phase as the sum of its GEMMs and cell kernels, and that time split as
    (input GEMM, recurrent part) (:func:`rnn_components_split`)."""
    parts = [(c, roofline_time(c, hw)) for c in rnn_components(op)]
    compute = sum(t.compute_s * c.repeat for c, t in parts)
    memory = sum(t.memory_s * c.repeat for c, t in parts)
    overhead = sum(t.overhead_s * c.repeat for c, t in parts)
    split = _input_recurrent((c, t.time_s) for c, t in parts)
    return OpTime(compute, memory, overhead, sum(split)), split
