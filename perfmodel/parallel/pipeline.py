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

Acyclic, balanced, c = 0: T = (m·g + S - 1)·τ, the GPipe/1F1B result with
bubble fraction (S-1)/(m·g+S-1) (Huang et al. 2019, GPipe, sec. 2.2;
Narayanan et al. 2021, sec. 2.2.1: (p-1)/m of the ideal time).  With g = 1
that is the issue's (p-1)/(m+p-1).  Stacked unidirectional RNNs stream
timesteps (layer l at step t needs only layer l-1 at step t and layer l at
t-1): the wavefront across layers and time, g = steps, so the bubble
shrinks to (S-1)/(m·steps+S-1) but every timestep pays a send latency.
An item's stage time is the stage's micro-batch time / g (approximation:
ops costed over all timesteps at once -- input projections, the softmax --
are assumed to split evenly by timestep).
When a time loop spans stages (the RHN's recurrence depth cut into stages)
step t+1 of a micro-batch needs the last stage's step t: each timestep is a
cycle through all S stages, filled only by other micro-batches (cyclic).

Reported ``bubble_fraction`` = 1 - m·g·τ_max / T, the idle share of the
busiest stage.  Activations held per stage: ``min(m, S)`` micro-batches
in flight for 1F1B (Narayanan et al. 2021, sec. 2.2.1), ``m`` for GPipe.
With recomputation (activation checkpointing; Chen et al. 2016) a stage
keeps each unit's output per micro-batch in flight plus, once, one unit's
full activations, and backward repeats the forward pass (its collectives
included).
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
    opt_s: np.ndarray
    params: np.ndarray
    act_bytes: np.ndarray   # activations one in-flight micro-batch keeps (checkpoints with recompute)
    act_peak_bytes: np.ndarray  # held once, not per micro-batch: one unit's recomputed activations
    send_bytes: np.ndarray  # activation sent to the next stage (0 for the last)
    units: np.ndarray       # (S, L) number of units per stage
    flops: np.ndarray       # FLOPs of one micro-batch on one device of the stage


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


def partition(units: UnitCosts, stages: int, recompute: bool = False) -> Stages:
    fwd = units.fwd_s + units.tp_fwd_s
    bwd = units.bwd_s + units.tp_bwd_s + (fwd if recompute else 0)
    weights = fwd + bwd
    sid = stage_of_units(weights, stages)
    out = {k: np.zeros((stages, units.size)) for k in ("compute_s", "bwd_s", "tp_s", "opt_s", "params",
                                                       "act_bytes", "act_peak_bytes", "send_bytes", "units", "flops")}
    tp = units.tp_fwd_s + units.tp_bwd_s + (units.tp_fwd_s if recompute else 0)
    for s in range(stages):
        mask = sid == s
        out["compute_s"][s] = np.where(mask, weights - tp, 0).sum(0)
        out["bwd_s"][s] = np.where(mask, units.bwd_s + (units.fwd_s if recompute else 0), 0).sum(0)
        out["tp_s"][s] = np.where(mask, tp, 0).sum(0)
        out["opt_s"][s] = np.where(mask, units.opt_s, 0).sum(0)
        out["params"][s] = np.where(mask, units.params, 0).sum(0)
        out["units"][s] = mask.sum(0)
        out["flops"][s] = np.where(mask, units.flops + (units.fwd_flops if recompute else 0), 0).sum(0)
        if recompute:
            out["act_bytes"][s] = np.where(mask, units.out_bytes, 0).sum(0)
            out["act_peak_bytes"][s] = np.where(mask, units.act_bytes, 0).max(0)
        else:
            out["act_bytes"][s] = np.where(mask, units.act_bytes, 0).sum(0)
        if s < stages - 1:
            last = np.where(mask, np.arange(len(units.names))[:, None], -1).max(0)
            out["send_bytes"][s] = np.take_along_axis(units.out_bytes, last[None], 0)[0]
    return Stages(**out)


def schedule_time(stage_s: np.ndarray, p2p_item_s, micro_batches: int, steps: int = 1, cyclic: bool = False):
    """(T, bubble_fraction) of one step's pipeline; ``stage_s`` (S, L) per micro-batch."""
    n_stages = stage_s.shape[0]
    tau = stage_s / steps
    tau_max, tau_sum = tau.max(0), tau.sum(0)
    c = np.asarray(p2p_item_s) if n_stages > 1 else 0.0
    beat = np.maximum(tau_max, c)
    items = micro_batches * steps
    if cyclic and n_stages > 1:
        t = steps * np.maximum(micro_batches * beat, tau_sum + n_stages * c)
    else:
        t = (items - 1) * beat + tau_sum + (n_stages - 1) * c
    bubble = np.where(t > 0, np.clip(1 - items * tau_max / np.where(t > 0, t, 1), 0.0, 1.0), 0.0)
    return t, bubble


def in_flight(micro_batches: int, stages: int, schedule: str = "1f1b") -> int:
    """Micro-batches whose activations a stage holds at once."""
    return micro_batches if schedule == "gpipe" else min(micro_batches, stages)
