"""Time per step of a parallel layout: pipeline schedule + gradient all-reduce + optimizer.

    time_step = T_pipeline(stage compute + tensor-parallel collectives, point-to-point sends)
              + max over stages (exposed gradient all-reduce + optimizer step)

Memory per device (the fullest stage)::

    weights + gradients + optimizer state of the stage's parameters after the tensor split
    (perfmodel.cost.memory) + activations of one micro-batch x micro-batches in flight

:func:`evaluate` works on arrays (the layout search) and returns a :class:`StepEstimate`;
:func:`predict_parallel` is the one-configuration view behind ``perfmodel predict --dp/--tp/--pp``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..architectures import get_spec
from ..cost.memory import parameter_memory
from ..errors import PerfmodelError
from ..ops import DTYPE_BYTES
from ..scenario import Scenario
from . import collectives as coll
from .data import gradient_allreduce_s
from .device import UnitCosts, device_pass
from .layout import Layout, check_layout
from .pipeline import Stages, in_flight, partition, schedule_time


@dataclass(frozen=True)
class StepEstimate:
    """Time per step and memory per device of parallel layouts: each field an array over
    configurations (:func:`evaluate`), or one number (:meth:`at`, a :class:`ParallelPrediction`)."""

    time_per_step_s: object
    pipeline_s: object
    bubble_fraction: object
    tp_comm_s: object              # tensor-parallel collectives of the busiest stage, all micro-batches
    pp_p2p_s: object               # pipeline sends on the critical path
    dp_allreduce_s: object         # gradient all-reduce, whole
    dp_exposed_s: object           # ... the part not hidden behind backward
    optimizer_s: object
    per_device_memory_bytes: object
    memory_weights_bytes: object   # the fullest stage's parts
    memory_gradients_bytes: object
    memory_optimizer_bytes: object
    memory_activations_bytes: object
    fits_in_memory: object
    flops_per_device_step: object

    @property
    def comm_time_s(self):
        """Communication on the critical path: tensor-parallel + pipeline sends + exposed all-reduce."""
        return self.tp_comm_s + self.pp_p2p_s + self.dp_exposed_s

    def at(self, i: int) -> StepEstimate:
        """Configuration ``i`` as Python numbers."""
        return StepEstimate(**{f.name: (bool if f.name == "fits_in_memory" else float)(getattr(self, f.name)[i])
                               for f in fields(self)})

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def evaluate(stages: Stages, scenario: Scenario, dp: int, tp, m: int, steps: int = 1,
             cyclic: bool = False) -> StepEstimate:
    """Arrays over configurations for one (dp, pp = stages, micro-batches m).

    ``steps`` and ``cyclic`` are the model's recurrence structure (:class:`.device.UnitCosts`).
    """
    hw, opts = scenario.hardware, scenario.options
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
    grad_bytes = stages.params * DTYPE_BYTES[scenario.dtype]
    dp_total, dp_exposed = gradient_allreduce_s(grad_bytes, stages.bwd_s, dp, dp_link, opts.algorithm,
                                                opts.bucket_bytes, opts.overlap)
    tail = (dp_exposed + stages.opt_s).max(0)
    time_step = pipe_s + tail
    # memory of each stage's devices
    mem = parameter_memory(stages.params, scenario.dtype, scenario.optimizer)
    acts = stages.act_bytes * in_flight(m, n_stages, opts.schedule) + stages.act_peak_bytes
    per_stage = mem.total_bytes + acts
    worst = per_stage.argmax(0)
    pick = lambda a: np.take_along_axis(np.broadcast_to(a, per_stage.shape), worst[None], 0)[0]  # noqa: E731
    busiest = stage_s.argmax(0)
    return StepEstimate(
        time_per_step_s=time_step,
        pipeline_s=pipe_s,
        bubble_fraction=bubble,
        tp_comm_s=m * np.take_along_axis(stages.tp_s, busiest[None], 0)[0],
        pp_p2p_s=pipe_s - pipe_no_p2p,
        dp_allreduce_s=dp_total.max(0),
        dp_exposed_s=dp_exposed.max(0),
        optimizer_s=stages.opt_s.max(0),
        per_device_memory_bytes=per_stage.max(0),
        memory_weights_bytes=pick(mem.weights_bytes),
        memory_gradients_bytes=pick(mem.gradients_bytes),
        memory_optimizer_bytes=pick(mem.optimizer_bytes),
        memory_activations_bytes=pick(acts),
        fits_in_memory=per_stage.max(0) <= hw.memory_capacity_bytes,
        flops_per_device_step=m * stages.flops.max(0),
    )


@dataclass
class ParallelPrediction:
    scenario: Scenario
    width: int
    layout: Layout
    devices: int
    batch: int
    micro_batch: int
    params: int
    step: StepEstimate                  # of this one configuration (Python numbers)
    persistent_rnn_active: bool
    unit_time_per_micro_batch_s: dict   # layer unit -> forward + backward seconds of one micro-batch
    stage_units: list                   # the layer units of each pipeline stage

    @property
    def time_per_step_s(self) -> float:
        return self.step.time_per_step_s

    @property
    def fits_in_memory(self) -> bool:
        return self.step.fits_in_memory

    def to_dict(self) -> dict:
        s = self.scenario
        return {"model": s.model, "width": self.width, "hardware": s.hardware.name, "dtype": s.dtype,
                "optimizer": s.optimizer, "layout": self.layout.to_dict(), "devices": self.devices,
                "batch": self.batch, "micro_batch": self.micro_batch, "params": self.params,
                "options": {**asdict(s.options)}, "stage_units": self.stage_units,
                **self.step.to_dict(), "persistent_rnn_active": self.persistent_rnn_active,
                "unit_time_per_micro_batch_s": self.unit_time_per_micro_batch_s,
                "comm_time_s": self.step.comm_time_s}


def check_stages(units: UnitCosts, pp: int) -> None:
    if pp > len(units.names):
        raise PerfmodelError(f"pp={pp} is not allowed: the model has only {len(units.names)} layer units to "
                             f"split into pipeline stages ({', '.join(units.names)})")


def predict_parallel(scenario: Scenario, width: int, layout: Layout, batch: int | None = None,
                     devices: int | None = None) -> ParallelPrediction:
    """Time per step and memory per device of ``scenario``'s model at ``width`` under ``layout``
    (``batch``: the global batch, default the model's; ``devices``: those available, default the layout's)."""
    s = scenario
    s.check()
    if batch is None:
        batch = int(get_spec(s.model).resolve(s.knobs)["batch"])
    check_layout(layout, batch, devices)
    mb = layout.micro_batch(batch)
    units = device_pass(s, np.array([width]), mb, layout.tp)
    if not units.valid[0]:
        raise PerfmodelError(f"tp={layout.tp} is not allowed for {s.model} at width {width}: a split dimension "
                             f"(hidden units, heads or channels) is smaller than or not divisible by {layout.tp}")
    check_stages(units, layout.pp)
    stages = partition(units, layout.pp, s.options.recompute)
    r = evaluate(stages, s, layout.dp, layout.tp, layout.micro_batches, units.steps, units.cyclic)
    unit_s = {n: float(units.fwd_s[i, 0] + units.bwd_s[i, 0]) for i, n in enumerate(units.names)}
    sid = [int(x) for x in stages.units[:, 0]]
    names, bounds, start = units.names, [], 0
    for n in sid:
        bounds.append(names[start:start + n])
        start += n
    return ParallelPrediction(s, int(width), layout, devices or layout.devices, batch, mb,
                              int(units.params_total[0]), r.at(0), bool(units.persistent[0]), unit_s, bounds)
