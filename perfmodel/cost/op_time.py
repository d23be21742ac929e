"""Op + hardware profile -> seconds: the analytic roofline, scaled by measured residuals.

    op_time(op) = roofline_time(op)                                   GEMM, pointwise, memory ops
    op_time(conv) = roofline_time(conv, compute_s = conv_compute_s * conv_ratio)
    op_time(rnn)  = roofline_time(rnn) * rnn_time_s / roofline_time(rnn).time_s

Inside a training step (the default), a GEMM's or attention kernel's compute part is divided by the
profile's ``in_step_fraction`` where it has one (the tensor-core rate those kernels keep in a step
on a full node, against the isolated-kernel figures the profile's efficiencies are), and the kernel's
time is formed again: ``max(compute / in_step_fraction, memory) + overhead``.  ``isolated=True``
prices the kernel as a microbenchmark times it (the DeepBench check, calibration labels).

The roofline (:mod:`perfmodel.cost.roofline`) already reads the calibrated GEMM,
memory and overhead rates (:mod:`perfmodel.cost.rates`); the measured conv ratio
and RNN layer time (:mod:`perfmodel.cost.residuals`) apply where the profile
measured those layers, else the analytic time stands.  A measured RNN layer keeps
the analytic split into compute, memory and overhead, scaled to the measured total.
"""
from __future__ import annotations

from ..hardware import HardwareProfile
from ..ops import Op, OpKind
from . import residuals
from .rates import dispatch_s
from .roofline import OpTime, conv_compute_s, overlap, rnn_roofline, roofline_time

#: op kinds whose compute runs on the tensor cores at the profile's GEMM / attention efficiency
TENSOR_KINDS = (OpKind.GEMM, OpKind.ATTENTION)


def standalone_s(op: Op, hw: HardwareProfile) -> float:
    """Seconds of one execution of ``op`` called on its own, the way a calibration point is timed: the
    kernel part of :func:`op_time` (``max(compute, memory)``, no in-step overhead) plus the standalone
    dispatch cost the rates subtract from each measured point (:func:`perfmodel.cost.rates.dispatch_s`)."""
    t = op_time(op, hw, isolated=True)
    return float(max(t.compute_s, t.memory_s)) + dispatch_s(hw)


def op_time(op: Op, hw: HardwareProfile, isolated: bool = False) -> OpTime:
    """Time of one execution of ``op`` on ``hw``: inside a training step, or ``isolated`` (module doc)."""
    t = _kernel_time(op, hw)
    f = hw.in_step_fraction
    if isolated or f is None or op.kind not in TENSOR_KINDS:
        return t
    compute = t.compute_s / f
    return OpTime(compute, t.memory_s, t.overhead_s, overlap(compute, t.memory_s) + t.overhead_s)


def _kernel_time(op: Op, hw: HardwareProfile) -> OpTime:
    """Time of one execution of ``op`` on ``hw`` as an isolated kernel."""
    if op.kind == OpKind.RNN:
        analytic, split = rnn_roofline(op, hw)
        measured = residuals.rnn_time_s(hw, op, split=split)
        if measured is None:
            return analytic
        scale = measured / analytic.time_s
        return OpTime(analytic.compute_s * scale, analytic.memory_s * scale, analytic.overhead_s * scale, measured)
    if op.kind == OpKind.CONV2D:
        ratio = residuals.conv_ratio(hw, op)  # measured / analytic, when the profile measured convs
        if ratio is not None:
            return roofline_time(op, hw, compute_s=conv_compute_s(op, hw) * ratio)
    return roofline_time(op, hw)
