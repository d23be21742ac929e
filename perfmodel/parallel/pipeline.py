"""Pipeline (layer) parallelism: stages, micro-batches, the bubble, and the wavefront of stacked RNNs.

Stages are contiguous runs of units (see :mod:`.device`), balanced on time:
stage boundary i is put at the unit boundary whose running time is closest
to ``i/S`` of the total (per configuration, vectorized), every stage keeping
at least one unit.

Schedule time for S stages, m micro-batches, stage times τ_s per *item*
(an item is one micro-batch, or one timestep of one when the model streams
timesteps: ``steps = g``), and c = point-to-point time of one item across
one boundary (forward activation + backward gradient)::

    acyclic   T = (m·g - 1)·max(τ_max, c) + Σ_s τ_s + (S-1)·c
    cyclic    T = g · max(m·max(τ_max, c), Σ_s τ_s + S·c)

Those are the formulas with the sends overlapping compute (``overlap_p2p``).  Megatron-LM and
DeepSpeed's pipeline engines send and receive *blocking*: ``p2p_communication._communicate`` waits on
every ``batch_isend_irecv`` request and then calls ``torch.cuda.synchronize()`` before the next
forward or backward starts (NVIDIA/Megatron-LM ``megatron/p2p_communication.py``, 2021, and
``megatron/core/pipeline_parallel/p2p_communication.py``; overlap only with
``--overlap-p2p-communication``).  Then each item's sends add to its beat instead of hiding behind
it, ``max(τ_max, V·c)`` -> ``τ_max + V·c`` (and ``max(τ_max, c)`` -> ``τ_max + c`` in the cyclic case).

Acyclic, balanced, c = 0: T = (m·g + S - 1)·τ, the GPipe/1F1B result with
bubble fraction (S-1)/(m·g+S-1) (Huang et al. 2019, GPipe, sec. 2.2;
Narayanan et al. 2021, sec. 2.2.1: (p-1)/m of the ideal time).  With g = 1
that is the issue's (p-1)/(m+p-1).

Interleaved 1F1B with V model chunks per device (Narayanan et al. 2021, sec. 2.2.2): the fill and
drain pass chunks of τ/V, so the bubble shrinks to (p-1)/(V·m) of the ideal time, and every item
crosses V times as many stage boundaries (V sends per item per device)::

    acyclic, V chunks   T = max((m·g - 1)·max(τ_max, V·c) + τ_max + (Σ_s τ_s - τ_max)/V, Σ_s τ_s) + (S-1)·c

(V = 1 is the acyclic formula above; the max: one item still passes every stage in turn, so
fewer items than stages gain nothing).  The first stage then holds activations of
``min(m, S)·(1 + (S-1)/(S·V))`` micro-batches (Korthikanti et al. 2022, sec. 4.2.3).  Stacked unidirectional RNNs stream
timesteps (layer l at step t needs only layer l-1 at step t and layer l at
t-1): the wavefront across layers and time, g = steps, so the bubble
shrinks to (S-1)/(m·steps+S-1) but every timestep pays a send latency.
An item's stage time is the stage's micro-batch time / g (approximation:
ops costed over all timesteps at once -- input projections, the softmax --
are assumed to split evenly by timestep).
When a time loop spans stages (the RHN's recurrence depth cut into stages)
step t+1 of a micro-batch needs the last stage's step t: each timestep is a
cycle through all S stages, filled only by other micro-batches (cyclic).

A weight reused by a later op (GPT-2's LM head reads the token embedding) whose two users land on
different stages is kept twice: the later stage holds a copy (parameters, gradients, optimizer state
and update), and after backward the two copies' gradients are all-reduced between the two stages
(Megatron-LM ``finalize_model_grads`` / ``_allreduce_word_embedding_grads``; DeepSpeed's
``ReduceTiedGrads``), exposed: :func:`perfmodel.parallel.step.data_parallel`.

Reported ``bubble_fraction`` = 1 - m·g·τ_max / T, the idle share of the
busiest stage.  Activations held per stage: ``min(m, S)`` micro-batches
in flight for 1F1B (Narayanan et al. 2021, sec. 2.2.1), ``m`` for GPipe.
With full recomputation (activation checkpointing; Chen et al. 2016) a stage
keeps each unit's output per micro-batch in flight plus, once, one unit's
full activations, and backward repeats the forward pass (its collectives
included); checkpointing only every k-th block (``recompute_every``, torchtitan's
"selective layer" AC) does that for those blocks and keeps the others' activations.
Selective recomputation (Korthikanti et al. 2022, sec. 5) drops
only the attention core's activations (:data:`perfmodel.architectures.attention.CORE_OPS`),
holds one unit's core once, and backward reruns the core's forward ops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .device import UnitCosts


def bubble_fraction(stages, micro_batches, steps=1):
    """(S-1)/(m·g+S-1): the idle share of a balanced pipeline."""
    s, m = np.asarray(stages, float), np.asarray(micro_batches, float)
    return (s - 1) / (m * steps + s - 1)


@dataclass
class Stages:
    """Per-stage sums, arrays of shape (S, L), per micro-batch on one device."""

    compute_s: np.ndarray   # forward + backward (+ recompute) op time
    bwd_s: np.ndarray       # backward part (window for overlapping the gradient all-reduce)
    tp_s: np.ndarray        # tensor-parallel collectives
    ep_s: np.ndarray        # expert-parallel all-to-alls
    opt_s: np.ndarray
    params: np.ndarray
    expert_params: np.ndarray   # the part of params sharded over the expert-parallel group
    max_unit_params: np.ndarray  # the stage's largest unit (ZeRO-3 gathers one unit at a time)
    act_bytes: np.ndarray   # activations one in-flight micro-batch keeps (checkpoints with recompute)
    act_peak_bytes: np.ndarray  # held once, not per micro-batch: one unit's recomputed activations
    send_bytes: np.ndarray  # activation sent to the next stage (0 for the last)
    units: np.ndarray       # (S, L) number of units per stage
    flops: np.ndarray       # FLOPs of one micro-batch on one device of the stage
    tied_params: np.ndarray  # a reused weight split from its user: its parameters on both stages holding it
    max_group_params: np.ndarray  # the stage's largest parameter group (ZeRO-3 gathering per module)


def slice_stages(st: Stages, n: int) -> Stages:
    """The first ``n`` configurations of ``st``."""
    return Stages(*(getattr(st, f)[:, :n] for f in st.__dataclass_fields__))


def stage_of_units(weights: np.ndarray, stages: int) -> np.ndarray:
    """(U, L) stage index of every unit: contiguous, non-empty, balanced on ``weights``."""
    n_units, n = weights.shape
    if stages == 1:
        return np.zeros((n_units, n), np.int64)
    cum = np.cumsum(weights, axis=0)                          # time of units [0..u]
    total = cum[-1]
    cuts = []
    for i in range(1, stages):
        target = total * i / stages
        cuts.append(np.argmin(np.abs(cum[:-1] - target), axis=0) + 1)  # units before cut i
    cuts = np.stack(cuts)                                     # (S-1, L)
    offs = np.arange(1, stages)[:, None]
    c = np.clip(cuts - offs, 0, n_units - stages)
    c = np.maximum.accumulate(c, axis=0)
    cuts = c + offs
    u = np.arange(n_units)[:, None, None]
    return (u >= cuts[None]).sum(axis=1)


def partition(units: UnitCosts, stages: int, recompute="none", every: int = 1) -> Stages:
    """Stages of ``units``; ``recompute``: none | selective | full (a bool: full or none); ``every`` > 1
    with full: only every ``every``-th transformer block is checkpointed (module docstring)."""
    mode = ("full" if recompute else "none") if isinstance(recompute, bool) else recompute
    selective = mode == "selective"
    full = checkpointed(units.names, every) if mode == "full" else np.zeros((len(units.names), 1), bool)
    ep = units.ep_fwd_s + units.ep_bwd_s + units.ep_fwd_s * full
    fwd = units.fwd_s + units.tp_fwd_s + units.ep_fwd_s
    rerun = np.where(full, fwd, units.core_fwd_s if selective else 0)
    bwd = units.bwd_s + units.tp_bwd_s + units.ep_bwd_s + rerun
    weights = fwd + bwd
    sid = stage_of_units(weights, stages)
    tp = units.tp_fwd_s + units.tp_bwd_s + units.tp_fwd_s * full
    rerun_compute = np.where(full, units.fwd_s, units.core_fwd_s if selective else 0)
    rerun_flops = np.where(full, units.fwd_flops, units.core_fwd_flops if selective else 0)
    # stages are contiguous runs of units: a stage's sum is the difference of running sums at its ends
    counts = np.stack([(sid == s).sum(0) for s in range(stages)])            # (S, L) units per stage
    end = np.cumsum(counts, 0)
    begin = end - counts
    shape = (len(units.names), units.size)

    def per_stage(x):
        run = np.concatenate([np.zeros((1, units.size)), np.cumsum(np.broadcast_to(x, shape), 0)])
        return np.take_along_axis(run, end, 0) - np.take_along_axis(run, begin, 0)

    def stage_max(x):
        return np.stack([np.where(sid == s, x, 0).max(0) for s in range(stages)])

    act, peak = (units.act_bytes - units.core_act_bytes, units.core_act_bytes) if selective else \
        (np.where(full, units.out_bytes, units.act_bytes), np.where(full, units.act_bytes, 0) if full.any() else None)
    out = {"compute_s": per_stage(weights - tp - ep), "bwd_s": per_stage(units.bwd_s + rerun_compute),
           "tp_s": per_stage(tp), "ep_s": per_stage(ep), "opt_s": per_stage(units.opt_s),
           "params": per_stage(units.params), "expert_params": per_stage(units.expert_params),
           "max_unit_params": stage_max(units.params), "max_group_params": stage_max(units.max_group_params),
           "units": counts.astype(float),
           "flops": per_stage(units.flops + rerun_flops), "act_bytes": per_stage(act),
           "act_peak_bytes": np.zeros((stages, units.size)) if peak is None else stage_max(peak),
           "send_bytes": np.zeros((stages, units.size))}
    if stages > 1:   # the last unit of each stage but the last hands its output on
        out["send_bytes"][:-1] = np.take_along_axis(units.out_bytes, end[:-1] - 1, 0)
    out["tied_params"] = np.zeros((stages, units.size))
    for owner, user in units.tied:
        at_user, at_owner = (np.arange(stages)[:, None] == sid[u][None] for u in (user, owner))
        split = sid[owner] != sid[user]
        copy = np.where(split, units.params[owner], 0.0)
        out["params"] += at_user * copy        # the user's stage keeps a copy, updated like the original
        out["opt_s"] += at_user * np.where(split, units.opt_s[owner], 0.0)
        out["tied_params"] += (at_user | at_owner) * copy
    return Stages(**out)


def checkpointed(names, every: int = 1) -> np.ndarray:
    """(U, 1) whether each unit reruns its forward in backward under full recomputation: all of them, or
    with ``every`` > 1 the transformer blocks ``blocks/i`` with i % every == 0 (torchtitan's "selective
    layer" activation checkpointing, ``ac_freq``: its ``parallelize_llama.py`` wraps those blocks only)."""
    if every == 1:
        return np.ones((len(names), 1), bool)
    idx = [int(n.split("/")[1]) if n.startswith("blocks/") else None for n in names]
    return np.array([[i is not None and i % every == 0] for i in idx])


def _beat(tau_max, sends, blocking: bool):
    """Time per item of the busiest stage: its compute and its sends, serial when blocking."""
    return tau_max + sends if blocking else np.maximum(tau_max, sends)


def schedule_time(stage_s: np.ndarray, p2p_item_s, micro_batches: int, steps: int = 1, cyclic: bool = False,
                  virtual: int = 1, blocking: bool = False):
    """(T, bubble_fraction) of one step's pipeline; ``stage_s`` (S, L) per micro-batch; ``virtual``
    model chunks per device (interleaved 1F1B, acyclic only); ``blocking``: sends do not overlap
    compute (module docstring)."""
    n_stages = stage_s.shape[0]
    tau = stage_s / steps
    tau_max, tau_sum = tau.max(0), tau.sum(0)
    c = np.asarray(p2p_item_s) if n_stages > 1 else 0.0
    items = micro_batches * steps
    if cyclic and n_stages > 1:
        t = steps * np.maximum(micro_batches * _beat(tau_max, c, blocking), tau_sum + n_stages * c)
    elif np.ndim(virtual) or virtual > 1:   # (an array: the layout search's choice per configuration)
        t = np.maximum((items - 1) * _beat(tau_max, virtual * c, blocking) + tau_max + (tau_sum - tau_max) / virtual,
                       tau_sum) + (n_stages - 1) * c
    else:
        t = (items - 1) * _beat(tau_max, c, blocking) + tau_sum + (n_stages - 1) * c
    bubble = np.where(t > 0, np.clip(1 - items * tau_max / np.where(t > 0, t, 1), 0.0, 1.0), 0.0)
    return t, bubble


def in_flight(micro_batches: int, stages: int, schedule: str = "1f1b", virtual: int = 1) -> float:
    """Micro-batches whose activations a stage holds at once (interleaved: module docstring)."""
    if schedule == "gpipe":
        return micro_batches
    n = min(micro_batches, stages)
    if np.ndim(virtual) == 0 and virtual <= 1:
        return n
    return np.where(np.asarray(virtual) > 1, n * (1 + (stages - 1) / (stages * np.asarray(virtual))), n)
