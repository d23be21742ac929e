"""Time per training step: build a model's op graph, cost every op, return a tidy breakdown.

One structure (:class:`Prediction`) with three views: the CLI table, ``--json``
and ``--csv``, and the HTML report.  :func:`predict_arrays` is the vectorized
path used by sweeps: widths as a NumPy array, one pass over the ops.  Both price
ops in :mod:`perfmodel.cost.step_cost`; :func:`predict_step` is
:func:`predict` of a :class:`perfmodel.scenario.Scenario`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .architectures import build_graph
from .cost import rates
from .cost.memory import MemoryFootprint, memory_footprint
from .cost.roofline import fresh_output_bytes
from .cost.step_cost import cost_ops, total_costs
from .hardware import HardwareProfile
from .ops import Op
from .scenario import Scenario, check_precision


@dataclass(frozen=True)
class BreakdownRow:
    name: str
    kind: str
    phase: str
    repeat: int
    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float
    time_s: float
    bound: str


@dataclass(frozen=True)
class Prediction:
    model: str
    width: int
    config: dict
    hardware: str
    dtype: str
    optimizer: str
    params: int
    flops_per_step: float
    bytes_per_step: float
    time_per_step_s: float
    memory: MemoryFootprint
    memory_capacity_bytes: float
    peak_flops: float
    breakdown: list[BreakdownRow] = field(default_factory=list)
    fresh_bytes_per_step: float = 0.0   # outputs the model prices as faulted in (CPU allocation calibration)
    cold_pages: bool = False            # those faults priced at the cold rate (perfmodel.cost.rates.cold_pages)

    @property
    def fits_in_memory(self) -> bool:
        return bool(self.memory.total_bytes <= self.memory_capacity_bytes)

    @property
    def achieved_flops(self) -> float:
        return self.flops_per_step / self.time_per_step_s

    @property
    def utilization(self) -> float:
        return self.achieved_flops / self.peak_flops

    def group(self, key) -> dict[str, dict]:
        """Sum time/flops/bytes of breakdown rows by ``key(row)`` (e.g. phase or layer)."""
        out: dict[str, dict] = {}
        for r in self.breakdown:
            g = out.setdefault(key(r), {"flops": 0.0, "bytes": 0.0, "time_s": 0.0, "compute_s": 0.0,
                                        "memory_s": 0.0, "overhead_s": 0.0})
            g["flops"] += r.flops
            g["bytes"] += r.bytes
            g["time_s"] += r.time_s
            g["compute_s"] += r.compute_s
            g["memory_s"] += r.memory_s
            g["overhead_s"] += r.overhead_s
        return out

    def by_phase(self):
        return self.group(lambda r: r.phase)

    def by_layer(self, depth: int = 2):
        return self.group(lambda r: "/".join(r.name.split("/")[:depth]))

    def by_bound(self):
        return self.group(lambda r: r.bound)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "width": self.width, "config": self.config, "hardware": self.hardware,
            "dtype": self.dtype, "optimizer": self.optimizer, "params": self.params,
            "flops_per_step": self.flops_per_step, "bytes_per_step": self.bytes_per_step,
            "time_per_step_s": self.time_per_step_s, "achieved_flops_per_s": self.achieved_flops,
            "utilization": self.utilization, "memory_bytes": self.memory.total_bytes,
            "memory": self.memory.to_dict(), "memory_capacity_bytes": self.memory_capacity_bytes,
            "fits_in_memory": self.fits_in_memory, "fresh_bytes_per_step": self.fresh_bytes_per_step,
            "cold_pages": self.cold_pages,
            "breakdown": [{"name": r.name, "kind": r.kind, "phase": r.phase, "repeat": r.repeat,
                           "flops": r.flops, "bytes": r.bytes, "time_s": r.time_s, "bound": r.bound,
                           "compute_s": r.compute_s, "memory_s": r.memory_s, "overhead_s": r.overhead_s}
                          for r in self.breakdown],
        }


def step_fresh_bytes(ops, hw: HardwareProfile, counts=None):
    """Bytes a step writes to freshly mapped pages (:func:`perfmodel.cost.roofline.fresh_output_bytes`
    x repeat x count, summed; arrays over configurations broadcast; 0 without an allocation calibration)."""
    total = 0.0
    for i, op in enumerate(ops):
        b = fresh_output_bytes(op, hw)
        if b is not None:
            total = total + b * op.repeat * (1 if counts is None else counts[i])
    return total


def predict(model: str, width: int, hw: HardwareProfile, dtype: str = "fp32", optimizer: str = "sgd",
            **knobs) -> Prediction:
    """Predict one configuration with a per-op breakdown."""
    check_precision(hw, dtype, optimizer)
    graph = build_graph(model, int(width) if np.ndim(width) == 0 else width, dtype, **knobs)
    ops = graph.step_ops(optimizer)
    c = cost_ops(ops, hw)
    fresh = float(step_fresh_bytes(ops, hw))
    cold = rates.cold_pages(hw, c.total("time_s"), fresh)
    if cold:   # the step's freed pages go back to the host before their next use: priced again
        c = cost_ops(ops, rates.cold_profile(hw))
    rows = [BreakdownRow(op.path, op.kind, op.phase, int(op.repeat), float(c.flops[i]), float(c.bytes[i]),
                         float(c.compute_s[i]), float(c.memory_s[i]), float(c.overhead_s[i]), float(c.time_s[i]),
                         str(c.bound[i])) for i, op in enumerate(ops)]
    mem = memory_footprint(graph, dtype, optimizer)
    return Prediction(model, int(width), graph.config, hw.name, dtype, optimizer, int(graph.params),
                      sum(r.flops for r in rows), sum(r.bytes for r in rows), sum(r.time_s for r in rows),
                      MemoryFootprint(*(int(v) for v in (mem.weights_bytes, mem.gradients_bytes,
                                                         mem.optimizer_bytes, mem.activations_bytes))),
                      hw.memory_capacity_bytes, hw.peak_flops(dtype), rows, fresh, bool(cold))


def predict_step(scenario: Scenario, width: int) -> Prediction:
    """:func:`predict` of ``scenario`` at ``width``: one device, the whole batch, a per-op breakdown."""
    s = scenario
    return predict(s.model, width, s.hardware, s.dtype, s.optimizer, **s.knobs)


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.array_equal(a, b))
    return a == b


def _fingerprint(op: Op) -> tuple:
    """Cheap key: scalars as they are, arrays by shape and three samples (then checked in full)."""
    def f(v):
        if isinstance(v, np.ndarray) and v.ndim:
            return (v.shape, v.flat[0].item(), v.flat[v.size // 2].item(), v.flat[-1].item())
        return v.item() if isinstance(v, np.generic) else v
    return (op.kind, op.phase, op.dtype, f(op.repeat), op.meta.get("kernels", 1),
            tuple((k, f(v)) for k, v in sorted(op.dims.items())), tuple(sorted(op.attrs.items())))


def unique_ops(ops: list[Op]) -> list[tuple[Op, int]]:
    """Ops with equal kind, phase, dtype, repeat, kernels, attrs and dims (checked element-wise)
    merged into ``(op, count)``: identical layers are costed once."""
    groups: dict[tuple, list[list]] = {}
    for op in ops:
        bucket = groups.setdefault(_fingerprint(op), [])
        for entry in bucket:
            rep = entry[0]
            if _same(rep.repeat, op.repeat) and rep.dims.keys() == op.dims.keys() and \
                    all(_same(rep.dims[k], op.dims[k]) for k in op.dims):
                entry[1] += 1
                break
        else:
            bucket.append([op, 1])
    return [(op, n) for bucket in groups.values() for op, n in bucket]


def predict_arrays(model: str, widths, hw: HardwareProfile, dtype: str = "fp32", optimizer: str = "sgd",
                   **knobs) -> dict[str, np.ndarray]:
    """Vectorized prediction over an array of widths: one op-graph pass, NumPy throughout.

    Returns arrays keyed ``params, flops_per_step, bytes_per_step, time_per_step_s,
    compute_s, memory_s, overhead_s, memory_bytes, fits_in_memory``.
    """
    check_precision(hw, dtype, optimizer)
    w = np.asarray(widths, dtype=np.int64)
    graph = build_graph(model, w, dtype, **knobs)
    ops, counts = zip(*unique_ops(graph.step_ops(optimizer)), strict=True)
    t = total_costs(list(ops), hw, list(counts), w.shape)
    if rates.has_cold_rate(hw):   # as predict: the configurations whose freed pages go back to the host
        cold = rates.cold_pages(hw, t["time_s"], step_fresh_bytes(ops, hw, counts))
        if np.any(cold):
            t2 = total_costs(list(ops), rates.cold_profile(hw), list(counts), w.shape)
            t = {k: np.where(cold, t2[k], t[k]) for k in t}
    acc = {"flops_per_step": t["flops"], "bytes_per_step": t["bytes"], "time_per_step_s": t["time_s"],
           "compute_s": t["compute_s"], "memory_s": t["memory_s"], "overhead_s": t["overhead_s"]}
    mem = memory_footprint(graph, dtype, optimizer).total_bytes
    acc["params"] = np.broadcast_to(graph.params, w.shape)
    acc["memory_bytes"] = np.broadcast_to(mem, w.shape)
    acc["fits_in_memory"] = acc["memory_bytes"] <= hw.memory_capacity_bytes
    return acc
