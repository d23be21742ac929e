"""The layout search's optional axes: ZeRO stage, recompute mode, sequence parallelism, virtual
stages and the expert-parallel degree, chosen per configuration (:func:`.search.plan` with
``SearchSpace(options=OptionSearch())``, ``perfmodel plan --search-options``).

The cost stays bounded by sharing work across choices and by three dominance facts of the model:

* recompute: one stage partition per mode; at one configuration none <= selective <= full in time
  and the reverse in memory, so a mode is costed only where a lighter one does not fit with the
  same (ZeRO, V); selective only for models with an attention core (not flash attention);
* virtual stages V (divisors of layers / pp): the pipeline time falls with V while V x the
  point-to-point time stays under the busiest stage's time (the fill shrinks, the beat does not
  grow) and memory grows with V, so two candidates per configuration: V* (the largest such V) and 1;
* ZeRO: the pipeline part does not depend on the stage; each stage's tail (exposed data-parallel
  communication + optimizer) and parameter memory are costed once and combined with each V;
  stage 3 only with pp = 1 (:func:`.step.check_layout_options`), none but 0 with dp = 1;
* sequence parallelism: with ring collectives it never costs time (each all-reduce becomes a
  reduce-scatter + all-gather of the same bytes, the norm and residual ops shrink) and saves
  memory, so it is on for tp > 1 (tree or auto all-reduce: the scenario's setting is kept);
* expert parallelism (mixture-of-experts models): one op-graph pass per degree, a divisor of the
  experts; a degree is used only with data-parallel degrees it divides.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..scenario import Scenario
from .options import RECOMPUTE_MODES, ZERO_STAGES
from .pipeline import Stages, in_flight, schedule_time
from .step import data_parallel, p2p_item_s, scatter_gather, virtual_stage_choices

#: plan-row fields the option search fills (recompute as its index in RECOMPUTE_MODES, the rest as numbers)
OPTION_FIELDS = ("zero", "recompute", "sequence_parallel", "virtual_stages", "ep")


@dataclass(frozen=True)
class OptionSearch:
    """Which optional axes :func:`.search.plan` searches (a tuple of values, or True for all allowed)."""

    zero: tuple = ZERO_STAGES
    recompute: tuple = RECOMPUTE_MODES
    virtual_stages: bool = True
    sequence_parallel: bool = True
    ep: bool = True


def ep_choices(search: OptionSearch | None, scenario: Scenario, experts) -> list[int]:
    if search is None or not search.ep or not experts:
        return [scenario.options.ep]
    return [e for e in range(1, experts + 1) if experts % e == 0 and e & (e - 1) == 0]


def searched_scenario(search: OptionSearch | None, scenario: Scenario, ep: int) -> Scenario:
    """The scenario a device pass of the search uses: its ep and (when searched) sequence parallelism."""
    o = scenario.options
    sp = o.sequence_parallel or bool(search and search.sequence_parallel and o.algorithm == "ring")
    if (ep, sp) == (o.ep, o.sequence_parallel):
        return scenario
    return replace(scenario, options=replace(o, ep=ep, sequence_parallel=sp))


def modes(search: OptionSearch | None, scenario: Scenario, units) -> list[str]:
    if search is None:
        return [scenario.options.recompute]
    has_core = bool(np.any(units.core_act_bytes > 0))
    return [r for r in RECOMPUTE_MODES if r in search.recompute and (r != "selective" or has_core)]


def best_where(valid, stages_by_mode: dict, scenario: Scenario, search: OptionSearch, dp: int, tp, m: int,
               steps: int, cyclic: bool, layers, pp: int, cache: dict | None = None) -> dict:
    """:func:`best_over_options` costed only where ``valid`` (a bool array over configurations; the
    rest: infinite time, not fitting).  ``cache`` (one dict per (pp, dp)) keeps the ZeRO-0/1 tails,
    which do not depend on m, over all configurations."""
    idx = np.flatnonzero(valid)
    n = np.shape(valid)[0]
    out = {"time_per_step_s": np.full(n, np.inf), "fits": np.zeros(n, bool),
           "per_device_memory_bytes": np.full(n, np.inf), "bubble_fraction": np.zeros(n), "comm_time_s": np.zeros(n),
           "zero": np.zeros(n, int), "recompute": np.zeros(n, int), "virtual_stages": np.ones(n, int),
           "sequence_parallel": np.zeros(n, bool), "ep": np.full(n, scenario.options.ep)}
    if idx.size:
        sub = {r: Stages(*(getattr(st, f)[:, idx] for f in st.__dataclass_fields__))
               for r, st in stages_by_mode.items()}
        pre = {}
        if cache is not None:
            for mode, st in stages_by_mode.items():
                for z in (0, 1):
                    if (mode, z) not in cache:
                        cache[(mode, z)] = _tail(st, scenario, dp, tp, m, z)
                    zz, tail, param_bytes, exposed = cache[(mode, z)]
                    pre[(mode, z)] = (zz, tail[idx], param_bytes[:, idx], exposed[idx])
        found = best_over_options(sub, scenario, search, dp, np.asarray(tp)[idx], m, steps, cyclic, layers, pp,
                                  pre)
        for k, v in found.items():
            out[k][idx] = v
    return out


def best_over_options(stages_by_mode: dict, scenario: Scenario, search: OptionSearch, dp: int, tp, m: int,
                      steps: int, cyclic: bool, layers, pp: int, cache: dict | None = None) -> dict:
    """Per configuration the fastest (recompute, V, ZeRO) that fits; arrays of the plan-row fields.
    A heavier recompute mode is costed only while some configuration does not fit every (V, ZeRO)
    of the lighter ones (where it does, the lighter mode is faster at each of them).  ZeRO-1 is
    left out at m = 1, where ZeRO-2 moves the same bytes in less memory.  ``cache``: (mode, zero) ->
    :func:`_tail`s already known."""
    cache = {} if cache is None else cache
    hw, opts = scenario.hardware, scenario.options
    cap = hw.memory_capacity_bytes
    zeros = [z for z in search.zero if (z < 3 or pp == 1) and (z == 0 or dp > 1)
             and not (z == 1 and m == 1 and 2 in search.zero)] or [0]
    vs = np.asarray(virtual_stage_choices(layers, pp) if search.virtual_stages and not cyclic and
                    opts.schedule == "1f1b" else [opts.virtual_stages])
    cands = []                    # (time, fits, memory, bubble, comm, zero, recompute, V) per candidate
    need = None                   # configurations some (V, ZeRO) of every lighter mode did not fit
    for mode, st in stages_by_mode.items():
        if need is not None and not need.any():
            break
        rc = RECOMPUTE_MODES.index(mode)
        stage_s = st.compute_s + st.tp_s + st.ep_s
        busiest = stage_s.argmax(0)[None]
        model_comm = m * (np.take_along_axis(st.tp_s, busiest, 0)[0] + np.take_along_axis(st.ep_s, busiest, 0)[0])
        c = p2p_item_s(st, hw, dp, tp, steps, scatter_gather(opts))
        v_star = _v_star(vs, stage_s.max(0) / steps, c)
        parts = []
        for z in zeros:
            parts.append(cache.get((mode, z)) or _tail(st, scenario, dp, tp, m, z))
        fit_all = np.ones(stage_s.shape[1], bool)
        for v in ([v_star, 1] if np.any(v_star > 1) else [1]):
            pipe, bubble = schedule_time(stage_s, c, m, steps, cyclic, v, not opts.overlap_p2p)
            pipe0, _ = schedule_time(stage_s, 0 * c, m, steps, cyclic, v)
            acts = st.act_bytes * in_flight(m, st.compute_s.shape[0], opts.schedule, v) + st.act_peak_bytes
            for z, tail, param_bytes, exposed in parts:
                memory = (param_bytes + acts).max(0)
                fits = memory <= cap
                fit_all &= fits
                cands.append((pipe + tail, fits, memory, bubble, model_comm + pipe - pipe0 + exposed, z, rc, v))
        need = ~fit_all if need is None else need & ~fit_all
    n = cands[0][0].shape[0]

    def col(j):
        return np.stack([cd[j] for cd in cands])

    fits, memory = col(1), col(2)
    i = np.where(fits.any(0), np.where(fits, col(0), np.inf).argmin(0), memory.argmin(0))

    def pick(a):
        return np.take_along_axis(a, i[None], 0)[0]

    best = {"time_per_step_s": pick(col(0)), "fits": pick(fits), "per_device_memory_bytes": pick(memory),
            "bubble_fraction": pick(col(3)), "comm_time_s": pick(col(4)),
            "zero": np.asarray([cd[5] for cd in cands])[i], "recompute": np.asarray([cd[6] for cd in cands])[i],
            "virtual_stages": pick(np.stack([np.broadcast_to(cd[7], (n,)) for cd in cands]))}
    best["sequence_parallel"] = opts.sequence_parallel & (np.asarray(tp) > 1)
    best["ep"] = opts.ep
    return best


def _tail(st: Stages, scenario: Scenario, dp: int, tp, m: int, zero: int):
    """(zero, exposed data-parallel communication + optimizer, parameter bytes per stage, exposed)."""
    _, exposed, opt_s, mem = data_parallel(st, scenario, dp, tp, m, zero)
    return zero, (exposed + opt_s).max(0), mem.total_bytes, exposed.max(0)


def _v_star(vs: np.ndarray, tau_max, c):
    """The largest allowed V with V x c <= the busiest stage's time per item (1 when none)."""
    ok = vs[:, None] * np.asarray(c)[None] <= np.asarray(tau_max)[None]
    return np.where(ok, vs[:, None], 1).max(0)
