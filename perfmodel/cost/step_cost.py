"""Work and seconds of a list of ops: the one loop that prices ops, for every prediction path.

For op ``i`` of the list, executed ``repeat_i`` times per training step (and standing for
``count_i`` identical ops, 1 unless given)::

    flops_i                                  = flops(op_i)          x repeat_i x count_i
    bytes_i                                  = (read + written)(op_i) x repeat_i x count_i
    compute_s_i, memory_s_i, overhead_s_i, time_s_i = op_time(op_i)  x repeat_i x count_i
    bound_i = the largest of compute, memory and overhead in one execution

FLOPs and bytes follow the op IR's cost table (:data:`perfmodel.ops.COST_TABLE`), seconds
:func:`perfmodel.cost.op_time.op_time`.  :func:`op_costs` is that loop; :func:`cost_ops`
collects it into per-op columns (the one-device breakdown, :func:`perfmodel.predict.predict`),
:func:`total_costs` sums it as it goes (the vectorized sweep,
:func:`perfmodel.predict.predict_arrays`, where no per-op array over the configurations may
outlive its op: keeping them all is slower), and the parallel models read it op by op
(:func:`perfmodel.parallel.device.device_pass`), so all of them agree by construction.  Every
value is a float, or an array over configurations when the ops' dims are arrays.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..hardware import HardwareProfile
from ..ops import COST_TABLE, Op
from .op_time import op_time
from .roofline import OpTime

COLUMNS = ("flops", "bytes", "compute_s", "memory_s", "overhead_s", "time_s")


@dataclass(frozen=True)
class OpCost:
    """One op's share of a training step: one execution (``per_execution``, ``flops_once``,
    ``bytes_once``) x ``runs`` = its repeat x its count.  The products are formed when read, so
    a sweep adding them up holds one temporary array at a time."""

    per_execution: OpTime
    flops_once: object
    bytes_once: object
    runs: object

    flops = property(lambda self: self.flops_once * self.runs)
    bytes = property(lambda self: self.bytes_once * self.runs)
    compute_s = property(lambda self: self.per_execution.compute_s * self.runs)
    memory_s = property(lambda self: self.per_execution.memory_s * self.runs)
    overhead_s = property(lambda self: self.per_execution.overhead_s * self.runs)
    time_s = property(lambda self: self.per_execution.time_s * self.runs)

    @property
    def bound(self):
        """'compute', 'memory' or 'overhead' (a string array over configurations)."""
        return self.per_execution.bound


def op_costs(ops: list[Op], hw: HardwareProfile, counts: list[int] | None = None) -> Iterator[OpCost]:
    """Price every op of ``ops`` on ``hw`` once, in order; see the module docstring."""
    for i, op in enumerate(ops):
        flops, read, written = COST_TABLE[op.kind](op)
        yield OpCost(op_time(op, hw), flops, read + written, op.repeat if counts is None else op.repeat * counts[i])


@dataclass(frozen=True)
class OpCosts:
    """Per-op columns of :func:`cost_ops`: one entry per op, in the order of the list."""

    flops: list
    bytes: list
    compute_s: list
    memory_s: list
    overhead_s: list
    time_s: list
    bound: list

    def total(self, column: str):
        """The sum over ops of one column (``"time_s"``, ``"flops"``, ...), added in op order."""
        return sum(getattr(self, column), 0.0)


def cost_ops(ops: list[Op], hw: HardwareProfile, counts: list[int] | None = None) -> OpCosts:
    """Per-op columns: a breakdown row per op (:func:`op_costs` collected)."""
    costs = list(op_costs(ops, hw, counts))
    return OpCosts(*([getattr(c, k) for c in costs] for k in COLUMNS), [c.bound for c in costs])


def total_costs(ops: list[Op], hw: HardwareProfile, counts: list[int] | None = None, shape=()) -> dict:
    """Each column summed over ops, as float arrays of ``shape`` (the sweeps: added in place as
    the ops are priced, so no per-op array outlives its op)."""
    out = {k: np.zeros(shape) for k in COLUMNS}
    for c in op_costs(ops, hw, counts):
        for k in COLUMNS:
            out[k] += getattr(c, k)
    return out
