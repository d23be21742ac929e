"""Time per step of a parallel layout: pipeline schedule + gradient all-reduce + optimizer.

    time_step = T_pipeline(stage compute + tensor-parallel collectives, point-to-point sends)
              + max over stages (exposed gradient all-reduce + optimizer step)

Memory per device (the fullest stage)::

    weights + gradients + optimizer state of the stage's parameters after the tensor split
    (perfmodel.cost.memory) + activations of one micro-batch x micro-batches in flight

:func:`evaluate` works on arrays (the layout search); :func:`predict_parallel`
is the one-configuration view behind ``perfmodel predict --dp/--tp/--pp``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..architectures import get_spec
from ..cost.memory import memory_footprint
from ..errors import PerfmodelError
from ..graph import ModelGraph
from ..hardware import HardwareProfile
from ..ops import DTYPE_BYTES
from ..predict import _check
from . import collectives as coll
from .data import DEFAULT_BUCKET_BYTES, gradient_allreduce_s
from .device import UnitCosts, device_pass
from .kernel import KernelOptions
from .layout import SCHEDULES, Layout, check_layout
from .pipeline import Stages, in_flight, partition, schedule_time


@dataclass(frozen=True)
class ParallelOptions:
    schedule: str = "1f1b"                  # 1f1b | gpipe
    algorithm: str = "ring"                 # all-reduce: ring | tree | auto
    bucket_bytes: float = DEFAULT_BUCKET_BYTES
    overlap: bool = True                    # gradient all-reduce overlaps backward
    recompute: bool = False                 # activation checkpointing per unit
    kernel: KernelOptions = field(default_factory=KernelOptions)

    def check(self) -> None:
        if self.schedule not in SCHEDULES:
            raise PerfmodelError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.algorithm not in coll.ALGORITHMS:
            raise PerfmodelError(f"unknown all-reduce algorithm {self.algorithm!r}; "
                                 f"allowed: {', '.join(coll.ALGORITHMS)}")
        if not self.bucket_bytes > 0:
            raise PerfmodelError(f"bucket size {self.bucket_bytes!r} is not allowed; it must be > 0 bytes")


def evaluate(stages: Stages, hw: HardwareProfile, dp: int, tp, m: int, dtype: str, optimizer: str,
             opts: ParallelOptions, steps: int = 1, cyclic: bool = False) -> dict:
    """Arrays over configurations for one (dp, pp = stages, micro-batches m).

    ``steps`` and ``cyclic`` are the model's recurrence structure (:class:`.device.UnitCosts`).
    """
    n_stages, n = stages.compute_s.shape
    g = steps
    tp = np.asarray(tp)
    # pipeline: one item's forward activation and backward gradient across the slowest boundary
    if n_stages > 1:
        p2p_link = coll.link(hw, coll.spans_nodes(hw, n_stages, tp * dp), "p2p")
        c = (2 * coll.p2p_s(stages.send_bytes[:-1] / g, p2p_link)).max(0)
    else:
        c = np.zeros(n)
    stage_s = stages.compute_s + stages.tp_s
    pipe_s, bubble = schedule_time(stage_s, c, m, g, cyclic)
    pipe_no_p2p, _ = schedule_time(stage_s, 0 * c, m, g, cyclic)
    # data parallel gradient all-reduce per stage, after that stage's last backward
    dp_link = coll.link(hw, coll.spans_nodes(hw, dp, tp))
    grad_bytes = stages.params * DTYPE_BYTES[dtype]
    dp_total, dp_exposed = gradient_allreduce_s(grad_bytes, stages.bwd_s, dp, dp_link, opts.algorithm,
                                                opts.bucket_bytes, opts.overlap)
    tail = (dp_exposed + stages.opt_s).max(0)
    time_step = pipe_s + tail
    # memory of each stage's devices
    mem = memory_footprint(ModelGraph("", [], stages.params, {}), dtype, optimizer)
    acts = stages.act_bytes * in_flight(m, n_stages, opts.schedule) + stages.act_peak_bytes
    per_stage = mem.total_bytes + acts
    worst = per_stage.argmax(0)
    pick = lambda a: np.take_along_axis(np.broadcast_to(a, per_stage.shape), worst[None], 0)[0]  # noqa: E731
    busiest = stage_s.argmax(0)
    return {
        "time_per_step_s": time_step,
        "pipeline_s": pipe_s,
        "bubble_fraction": bubble,
        "tp_comm_s": m * np.take_along_axis(stages.tp_s, busiest[None], 0)[0],
        "pp_p2p_s": pipe_s - pipe_no_p2p,
        "dp_allreduce_s": dp_total.max(0),
        "dp_exposed_s": dp_exposed.max(0),
        "optimizer_s": stages.opt_s.max(0),
        "per_device_memory_bytes": per_stage.max(0),
        "memory_weights_bytes": pick(mem.weights_bytes),
        "memory_gradients_bytes": pick(mem.gradients_bytes),
        "memory_optimizer_bytes": pick(mem.optimizer_bytes),
        "memory_activations_bytes": pick(acts),
        "fits_in_memory": per_stage.max(0) <= hw.memory_capacity_bytes,
        "flops_per_device_step": m * stages.flops.max(0),
    }


def comm_time(r: dict):
    """Communication on the critical path: tensor-parallel + pipeline sends + exposed all-reduce."""
    return r["tp_comm_s"] + r["pp_p2p_s"] + r["dp_exposed_s"]


@dataclass
class ParallelPrediction:
    model: str
    width: int
    hardware: str
    dtype: str
    optimizer: str
    layout: Layout
    devices: int
    batch: int
    micro_batch: int
    params: int
    options: ParallelOptions
    values: dict
    stage_units: list

    @property
    def time_per_step_s(self) -> float:
        return self.values["time_per_step_s"]

    @property
    def fits_in_memory(self) -> bool:
        return self.values["fits_in_memory"]

    def to_dict(self) -> dict:
        v = dict(self.values)
        return {"model": self.model, "width": self.width, "hardware": self.hardware, "dtype": self.dtype,
                "optimizer": self.optimizer, "layout": self.layout.to_dict(), "devices": self.devices,
                "batch": self.batch, "micro_batch": self.micro_batch, "params": self.params,
                "options": {**asdict(self.options)}, "stage_units": self.stage_units,
                **v, "comm_time_s": comm_time(v)}


def check_stages(units: UnitCosts, pp: int) -> None:
    if pp > len(units.names):
        raise PerfmodelError(f"pp={pp} is not allowed: the model has only {len(units.names)} layer units to "
                             f"split into pipeline stages ({', '.join(units.names)})")


def predict_parallel(model: str, width: int, hw: HardwareProfile, layout: Layout, batch: int | None = None,
                     dtype: str = "fp32", optimizer: str = "sgd", opts: ParallelOptions = ParallelOptions(),
                     devices: int | None = None, **knobs) -> ParallelPrediction:
    """Time per step and memory per device of ``model`` at ``width`` under ``layout``."""
    _check(hw, dtype, optimizer)
    opts.check()
    if batch is None:
        batch = int(get_spec(model).resolve(knobs)["batch"])
    check_layout(layout, batch, devices)
    mb = layout.micro_batch(batch)
    units = device_pass(model, np.array([width]), mb, layout.tp, hw, dtype, optimizer, knobs, opts.kernel,
                        opts.algorithm)
    if not units.valid[0]:
        raise PerfmodelError(f"tp={layout.tp} is not allowed for {model} at width {width}: a split dimension "
                             f"(hidden units, heads or channels) is smaller than or not divisible by {layout.tp}")
    check_stages(units, layout.pp)
    stages = partition(units, layout.pp, opts.recompute)
    r = evaluate(stages, hw, layout.dp, layout.tp, layout.micro_batches, dtype, optimizer, opts,
                 units.steps, units.cyclic)
    values = {k: (bool(v[0]) if k == "fits_in_memory" else float(v[0])) for k, v in r.items()}
    values["persistent_rnn_active"] = bool(units.persistent[0])
    values["unit_time_per_micro_batch_s"] = {n: float(units.fwd_s[i, 0] + units.bwd_s[i, 0])
                                             for i, n in enumerate(units.names)}
    sid = [int(x) for x in stages.units[:, 0]]
    names, bounds, start = units.names, [], 0
    for n in sid:
        bounds.append(names[start:start + n])
        start += n
    return ParallelPrediction(model, int(width), hw.name, dtype, optimizer, layout,
                              devices or layout.devices, batch, mb, int(units.params_total[0]), opts, values,
                              bounds)
