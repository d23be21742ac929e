"""Work and seconds of a list of ops: the one loop that prices ops, for every prediction path.

For op ``i`` of the list, executed ``repeat_i`` times per training step (and standing for
``count_i`` identical ops, 1 unless given)::

    flops_i                                  = flops(op_i)          x repeat_i x count_i
    bytes_i                                  = (read + written)(op_i) x repeat_i x count_i
    compute_s_i, memory_s_i, overhead_s_i, time_s_i = op_time(op_i)  x repeat_i x count_i
    bound_i = the largest of compute, memory and overhead in one execution

FLOPs and bytes follow the op IR's cost table (:data:`perfmodel.ops.COST_TABLE`), seconds
:func:`perfmodel.cost.op_time.op_time`.  The one-device breakdown
(:func:`perfmodel.predict.predict`), the vectorized sweep (:func:`perfmodel.predict.predict_arrays`)
and the parallel models (:func:`perfmodel.parallel.kernel.op_times`) all price ops here, so
they agree by construction.  Every value is a float, or an array over configurations when
the ops' dims are arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..hardware import HardwareProfile
from ..ops import COST_TABLE, Op
from .op_time import op_time
from .roofline import OpTime


@dataclass(frozen=True)
class OpCosts:
    """Per-op columns, one entry per op of the list :func:`cost_ops` priced, in its order."""

    flops: list
    bytes: list
    compute_s: list
    memory_s: list
    overhead_s: list
    time_s: list
    per_execution: list   # the OpTime of one execution of each op

    @property
    def bound(self) -> list:
        """'compute', 'memory' or 'overhead' per op (a string array over configurations)."""
        return [t.bound for t in self.per_execution]

    def total(self, column: str, start=0.0):
        """The sum over ops of one column (``"time_s"``, ``"flops"``, ...), added in op order."""
        out = start
        for v in getattr(self, column):
            out = out + v
        return out


def cost_ops(ops: list[Op], hw: HardwareProfile, counts: list[int] | None = None) -> OpCosts:
    """Price every op of ``ops`` on ``hw`` once; see the module docstring."""
    cols: dict[str, list] = {k: [] for k in ("flops", "bytes", "compute_s", "memory_s", "overhead_s", "time_s")}
    per_execution: list[OpTime] = []
    for i, op in enumerate(ops):
        t = op_time(op, hw)
        rep = op.repeat if counts is None else op.repeat * counts[i]
        flops, read, written = COST_TABLE[op.kind](op)
        cols["flops"].append(flops * rep)
        cols["bytes"].append((read + written) * rep)
        cols["compute_s"].append(t.compute_s * rep)
        cols["memory_s"].append(t.memory_s * rep)
        cols["overhead_s"].append(t.overhead_s * rep)
        cols["time_s"].append(t.time_s * rep)
        per_execution.append(t)
    return OpCosts(**cols, per_execution=per_execution)
