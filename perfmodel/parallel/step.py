"""Time per step of a parallel layout: pipeline schedule + gradient all-reduce + optimizer.

    time_step = T_pipeline(stage compute + tensor-parallel collectives + expert all-to-alls,
                           point-to-point sends; V chunks per device when interleaved)
              + max over stages (exposed data-parallel communication + optimizer step)

The data-parallel communication is the gradient all-reduce, or under ZeRO its reduce-scatters and
all-gathers (:mod:`.zero`), plus, on the two stages that hold a reused weight (the tied LM head,
:mod:`.pipeline`), the all-reduce of its two gradient copies; with ZeRO >= 1 each device updates
1/dp of the parameters (the optimizer step's time / dp).  Expert parameters (:mod:`.expert`) are
reduced over dp / ep devices.

Memory per device (the fullest stage)::

    weights + gradients + optimizer state of the stage's parameters after the tensor and expert
    split, sharded per ZeRO stage (perfmodel.cost.memory) [+ ZeRO-3: two units' gathered weights,
    the one computing and the one prefetched; two modules' (parameter groups') with
    ``zero3_gather="module"``] + activations of one micro-batch x micro-batches in flight

:func:`evaluate` works on arrays (the layout search) and returns a :class:`StepEstimate`;
:func:`predict_parallel` is the one-configuration view behind ``perfmodel predict --dp/--tp/--pp``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..architectures import get_spec
from ..cost.memory import MemoryFootprint, parameter_memory
from ..errors import PerfmodelError
from ..ops import DTYPE_BYTES
from ..scenario import Scenario
from . import collectives as coll
from .device import UnitCosts, device_pass
from .layout import Layout, check_layout
from .pipeline import Stages, in_flight, partition, schedule_time
from .zero import dp_comm_s


@dataclass(frozen=True)
class StepEstimate:
    """Time per step and memory per device of parallel layouts: each field an array over
    configurations (:func:`evaluate`), or one number (:meth:`at`, a :class:`ParallelPrediction`)."""

    time_per_step_s: object
    pipeline_s: object
    bubble_fraction: object
    tp_comm_s: object              # tensor-parallel collectives of the busiest stage, all micro-batches
    pp_p2p_s: object               # pipeline sends on the critical path
    dp_allreduce_s: object         # data-parallel gradient all-reduce (ZeRO: its collectives), whole
    dp_exposed_s: object           # ... the part not hidden behind compute
    optimizer_s: object
    per_device_memory_bytes: object
    memory_weights_bytes: object   # the fullest stage's parts
    memory_gradients_bytes: object
    memory_optimizer_bytes: object
    memory_activations_bytes: object
    fits_in_memory: object
    flops_per_device_step: object
    ep_alltoall_s: object = 0.0    # expert-parallel all-to-alls of the busiest stage, all micro-batches

    @property
    def comm_time_s(self):
        """Communication on the critical path: tensor-parallel + expert all-to-alls + pipeline sends +
        exposed data-parallel communication."""
        return self.tp_comm_s + self.ep_alltoall_s + self.pp_p2p_s + self.dp_exposed_s

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
    g, v = steps, opts.virtual_stages
    tp = np.asarray(tp)
    c = p2p_item_s(stages, hw, dp, tp, g, scatter_gather(opts))
    stage_s = stages.compute_s + stages.tp_s + stages.ep_s
    pipe_s, bubble = schedule_time(stage_s, c, m, g, cyclic, v, not opts.overlap_p2p)
    pipe_no_p2p, _ = schedule_time(stage_s, 0 * c, m, g, cyclic, v)
    dp_total, dp_exposed, opt_s, mem = data_parallel(stages, scenario, dp, tp, m)
    tail = (dp_exposed + opt_s).max(0)
    time_step = pipe_s + tail
    # memory of each stage's devices
    acts = stages.act_bytes * in_flight(m, n_stages, opts.schedule, v) + stages.act_peak_bytes
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
        optimizer_s=opt_s.max(0),
        per_device_memory_bytes=per_stage.max(0),
        memory_weights_bytes=pick(mem.weights_bytes),
        memory_gradients_bytes=pick(mem.gradients_bytes),
        memory_optimizer_bytes=pick(mem.optimizer_bytes),
        memory_activations_bytes=pick(acts),
        fits_in_memory=per_stage.max(0) <= hw.memory_capacity_bytes,
        flops_per_device_step=m * stages.flops.max(0),
        ep_alltoall_s=m * np.take_along_axis(stages.ep_s, busiest[None], 0)[0],
    )


def scatter_gather(opts) -> bool:
    """Whether pipeline sends use the scatter/gather optimization: on unless switched off, and not
    under sequence parallelism, whose stage outputs are already split over the tp group (Megatron-LM
    ``p2p_communication``: ``scatter_gather_tensors_in_pipeline and not sequence_parallel``)."""
    return opts.scatter_gather and not opts.sequence_parallel


def p2p_item_s(stages: Stages, hw, dp: int, tp, steps: int = 1, split: bool = False):
    """One item's forward activation and backward gradient across the slowest stage boundary.

    ``split`` (the scatter/gather optimization, Narayanan et al. 2021, sec. 4.1): each of the tp
    ranks sends 1/tp of the activation across the boundary and the receiving tp group all-gathers
    it over its own (intra-node) link: ``p2p(S / t) + allgather(S, t)`` instead of ``p2p(S)``."""
    n_stages, n = stages.compute_s.shape
    if n_stages == 1:
        return np.zeros(n)
    p2p_link = coll.link(hw, coll.spans_nodes(hw, n_stages, tp * dp), "p2p")
    nbytes = stages.send_bytes[:-1] / steps
    if not split:
        return (2 * coll.p2p_s(nbytes, p2p_link)).max(0)
    t = np.asarray(tp, dtype=float)
    gather = coll.allgather_s(nbytes, t, coll.link(hw, coll.spans_nodes(hw, t)))
    return (2 * (coll.p2p_s(nbytes / t, p2p_link) + gather)).max(0)


def data_parallel(stages: Stages, scenario: Scenario, dp: int, tp, m: int, zero: int | None = None):
    """(total, exposed) data-parallel communication, optimizer seconds and the parameter memory of
    each stage (S, L): the module docstring, dense and expert parameters apart when ep > 1;
    ``zero``: the ZeRO stage (default the scenario's)."""
    hw, opts, b = scenario.hardware, scenario.options, DTYPE_BYTES[scenario.dtype]
    ep, zero = opts.ep, opts.zero if zero is None else zero
    fwd_s = stages.compute_s - stages.bwd_s
    groups = [(stages.params, dp)] if ep == 1 else [(stages.params - stages.expert_params, dp),
                                                    (stages.expert_params, dp // ep)]
    total = exposed = 0
    mem = None
    for params, group in groups:
        ln = coll.link(hw, coll.spans_nodes(hw, group, tp * (ep if group < dp else 1)))
        t, e = dp_comm_s(zero, params * b, fwd_s, stages.bwd_s, stages.units, m, group, ln, opts.algorithm,
                         opts.bucket_bytes, opts.overlap, opts.zero1_allreduce)
        part = parameter_memory(params, scenario.dtype, scenario.optimizer, zero=zero, dp=group)
        total, exposed = total + t, exposed + e
        mem = part if mem is None else _add(mem, part)
    if stages.tied_params.any():   # a reused weight's two copies: their gradients, after backward, exposed
        ln = coll.link(hw, coll.spans_nodes(hw, stages.params.shape[0], tp * dp))
        t = coll.collective_s("allreduce", stages.tied_params * (4 if opts.tied_grad_fp32 else b), 2, ln,
                              opts.algorithm)
        total, exposed = total + t, exposed + t
    opt_s = stages.opt_s
    if zero >= 1:   # each device updates its shard: 1/dp of the dense, 1/(dp/ep) of the expert parameters
        shard = sum(p / grp for p, grp in groups) / np.where(stages.params > 0, stages.params, 1)
        opt_s = stages.opt_s * shard
    if zero == 3:   # the unit (or module) computing and the one prefetched, gathered in full
        gathered = stages.max_unit_params if opts.zero3_gather == "unit" else stages.max_group_params
        mem = _add(mem, MemoryFootprint(2 * gathered * b, 0, 0, 0))
    return total, exposed, opt_s, mem


def _add(a: MemoryFootprint, b: MemoryFootprint) -> MemoryFootprint:
    return MemoryFootprint(a.weights_bytes + b.weights_bytes, a.gradients_bytes + b.gradients_bytes,
                           a.optimizer_bytes + b.optimizer_bytes, a.activations_bytes + b.activations_bytes)


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


def virtual_stage_choices(layers, pp: int) -> list[int]:
    """Chunks per pipeline rank that split the ``layers`` evenly: divisors of layers / pp (Megatron-LM
    requires layers % (pp x V) == 0); [1] when pp = 1 or the layers do not divide."""
    if pp == 1 or not layers or layers % pp:
        return [1]
    per = layers // pp
    return [v for v in range(1, per + 1) if per % v == 0]


def check_layout_options(scenario: Scenario, layout: Layout) -> None:
    """One-line error for a ZeRO stage, interleaving or expert-parallel degree the layout cannot run."""
    o, knobs = scenario.options, get_spec(scenario.model).resolve(scenario.knobs)
    if o.zero == 3 and layout.pp > 1:
        raise PerfmodelError(f"--zero 3 with --pp {layout.pp} is not modelled (ZeRO-3 / FSDP full sharding "
                             "regathers each stage's parameters for every micro-batch); allowed with pipeline "
                             "stages: --zero 0, 1 or 2; or --pp 1")
    v = o.virtual_stages
    if v > 1:
        if layout.pp == 1 or o.schedule != "1f1b":
            raise PerfmodelError(f"--virtual-stages {v} is not allowed with --pp {layout.pp} and --schedule "
                                 f"{o.schedule}: interleaving needs --pp > 1 and the 1f1b schedule")
        layers = knobs.get("layers")
        allowed = virtual_stage_choices(layers, layout.pp)
        if v not in allowed:
            per = f"{layers} layers / pp {layout.pp}" if layers else f"model {scenario.model!r} has no layers knob"
            raise PerfmodelError(f"--virtual-stages {v} is not allowed: it must divide the layers per pipeline "
                                 f"stage ({per}); allowed: {', '.join(map(str, allowed))}")
    if o.ep > 1:
        experts = knobs.get("experts")
        if not experts:
            raise PerfmodelError(f"--ep {o.ep} is not allowed for a dense model: expert parallelism needs a "
                                 "mixture of experts (--set experts=E); allowed: --ep 1")
        if experts % o.ep or layout.dp % o.ep:
            raise PerfmodelError(f"--ep {o.ep} is not allowed: it must divide the experts per layer "
                                 f"(experts={experts}) and the data-parallel degree dp={layout.dp} of the "
                                 f"{layout.devices} devices (expert-parallel groups are carved out of dp)")


def predict_parallel(scenario: Scenario, width: int, layout: Layout, batch: int | None = None,
                     devices: int | None = None) -> ParallelPrediction:
    """Time per step and memory per device of ``scenario``'s model at ``width`` under ``layout``
    (``batch``: the global batch, default the model's; ``devices``: those available, default the layout's)."""
    s = scenario
    s.check()
    if batch is None:
        batch = int(get_spec(s.model).resolve(s.knobs)["batch"])
    check_layout(layout, batch, devices)
    check_layout_options(s, layout)
    mb = layout.micro_batch(batch)
    units = device_pass(s, np.array([width]), mb, layout.tp)
    if not units.valid[0]:
        raise PerfmodelError(f"tp={layout.tp} is not allowed for {s.model} at width {width}: a split dimension "
                             f"(hidden units, heads or channels) is smaller than or not divisible by {layout.tp}")
    check_stages(units, layout.pp)
    stages = partition(units, layout.pp, s.options.recompute, s.options.recompute_every)
    r = evaluate(stages, s, layout.dp, layout.tp, layout.micro_batches, units.steps, units.cyclic)
    unit_s = {n: float(units.fwd_s[i, 0] + units.bwd_s[i, 0]) for i, n in enumerate(units.names)}
    sid = [int(x) for x in stages.units[:, 0]]
    names, bounds, start = units.names, [], 0
    for n in sid:
        bounds.append(names[start:start + n])
        start += n
    return ParallelPrediction(s, int(width), layout, devices or layout.devices, batch, mb,
                              int(units.params_total[0]), r.at(0), bool(units.persistent[0]), unit_s, bounds)
