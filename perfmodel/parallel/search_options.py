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


def best_by_split(valid_by_m: dict, stages_by_mode: dict, scenario: Scenario, search: OptionSearch, dp: int, tp,
                  steps: int, cyclic: bool, layers, pp: int) -> dict:
    """Per micro-batch count m (the keys of ``valid_by_m``, bool arrays over the configurations of one
    (pp, dp)) the fastest (recompute, V, ZeRO) that fits, as arrays of the plan-row fields over those
    configurations (where not valid: infinite time, not fitting).

    Every m is costed in one pass: the rows are the valid configurations of each m, one after the
    other.  What does not depend on m (stage times, point-to-point time, V*, the ZeRO-0/1 tails and
    parameter memory) is costed once per configuration; the ZeRO-2/3 tails once per pass, with m an
    array.  The choices
    stay those of one m at a time: a heavier recompute mode is costed for an m only while some of
    its configurations do not fit every (V, ZeRO) of the lighter ones (where they do, the lighter
    mode is faster at each of them); the V* candidate only for an m where some V* > 1; ZeRO-1 is
    left out at m = 1, where ZeRO-2 moves the same bytes in less memory.  A candidate left out of a
    row is infinite in time and memory and does not fit, so it is never picked."""
    hw, opts = scenario.hardware, scenario.options
    cap = hw.memory_capacity_bytes
    n = next(iter(valid_by_m.values())).shape[0] if valid_by_m else 0
    ms = [m for m, v in valid_by_m.items() if v.any()]
    out = {m: _unfilled(n, scenario) for m in valid_by_m}
    if not ms:
        return out
    idx = [np.flatnonzero(valid_by_m[m]) for m in ms]
    rows = np.concatenate(idx)
    group = np.repeat(np.arange(len(ms)), [i.size for i in idx])
    starts = np.cumsum([0] + [i.size for i in idx[:-1]])
    m_row = np.asarray(ms)[group]
    tp = np.asarray(tp)
    tp_r = np.broadcast_to(tp, (n,))[rows]

    def per_m(x):
        """any(x) over the rows of each m, back on the rows."""
        return np.logical_or.reduceat(x, starts)[group]

    zeros = [z for z in search.zero if (z < 3 or pp == 1) and (z == 0 or dp > 1)] or [0]
    no_z1 = (m_row == 1) & (2 in search.zero)
    vs = np.asarray(virtual_stage_choices(layers, pp) if search.virtual_stages and not cyclic and
                    opts.schedule == "1f1b" else [opts.virtual_stages])
    cands = []                      # (time, fits, memory, bubble, comm, zero, recompute, V) per candidate
    active = np.ones(rows.size, bool)   # rows whose m still costs this mode
    need = None
    for mode, st in stages_by_mode.items():
        if not active.any():
            break
        rc = RECOMPUTE_MODES.index(mode)
        stage_s = st.compute_s + st.tp_s + st.ep_s
        busiest = stage_s.argmax(0)[None]
        comm_1 = np.take_along_axis(st.tp_s, busiest, 0)[0] + np.take_along_axis(st.ep_s, busiest, 0)[0]
        c = p2p_item_s(st, hw, dp, tp, steps, scatter_gather(opts))
        v_star = _v_star(vs, stage_s.max(0) / steps, c)[rows]
        stage_r, c_r = stage_s[:, rows], c[rows]
        model_comm = m_row * comm_1[rows]
        act_r, peak_r = st.act_bytes[:, rows], st.act_peak_bytes[:, rows]
        parts = [_tail_rows(st, scenario, dp, tp, z, m_row, rows, active) for z in zeros]
        with_v = per_m(v_star > 1)
        fit_all = np.ones(rows.size, bool)
        for v in ([v_star, 1] if with_v.any() else [1]):
            pipe, bubble = schedule_time(stage_r, c_r, m_row, steps, cyclic, v, not opts.overlap_p2p)
            pipe0, _ = schedule_time(stage_r, 0 * c_r, m_row, steps, cyclic, v)
            held = np.concatenate([np.broadcast_to(in_flight(m, stage_r.shape[0], opts.schedule,
                                                             v if np.ndim(v) == 0 else v[s:s + i.size]), i.shape)
                                   for m, s, i in zip(ms, starts, idx, strict=True)])
            acts = act_r * held + peak_r
            use_v = active & (with_v if np.ndim(v) else True)
            for z, tail, param_bytes, exposed in parts:
                use = use_v & ~no_z1 if z == 1 else use_v
                memory = (param_bytes + acts).max(0)
                fits = memory <= cap
                fit_all &= fits | ~use
                cands.append((np.where(use, pipe + tail, np.inf), fits & use, np.where(use, memory, np.inf), bubble,
                              model_comm + pipe - pipe0 + exposed, z, rc, v))
        need = ~fit_all if need is None else need & ~fit_all
        active = per_m(need & active)

    def col(j):
        return np.stack([cd[j] for cd in cands])

    fits, memory = col(1), col(2)
    i = np.where(fits.any(0), np.where(fits, col(0), np.inf).argmin(0), memory.argmin(0))

    def pick(a):
        return np.take_along_axis(a, i[None], 0)[0]

    best = {"time_per_step_s": pick(col(0)), "fits": pick(fits), "per_device_memory_bytes": pick(memory),
            "bubble_fraction": pick(col(3)), "comm_time_s": pick(col(4)),
            "zero": np.asarray([cd[5] for cd in cands])[i], "recompute": np.asarray([cd[6] for cd in cands])[i],
            "virtual_stages": pick(np.stack([np.broadcast_to(cd[7], rows.shape) for cd in cands])),
            "sequence_parallel": opts.sequence_parallel & (tp_r > 1)}
    for m, s, i_m in zip(ms, starts, idx, strict=True):
        for k, v in best.items():
            out[m][k][i_m] = v[s:s + i_m.size]
    return out


def _unfilled(n: int, scenario: Scenario) -> dict:
    return {"time_per_step_s": np.full(n, np.inf), "fits": np.zeros(n, bool),
            "per_device_memory_bytes": np.full(n, np.inf), "bubble_fraction": np.zeros(n), "comm_time_s": np.zeros(n),
            "zero": np.zeros(n, int), "recompute": np.zeros(n, int), "virtual_stages": np.ones(n, int),
            "sequence_parallel": np.zeros(n, bool), "ep": np.full(n, scenario.options.ep)}


def _tail_rows(st: Stages, scenario: Scenario, dp: int, tp, zero: int, m_row, rows, active):
    """:func:`_tail` on the rows (configuration ``rows`` at micro-batches ``m_row``): ZeRO 0/1 (no m in
    them) once per configuration; ZeRO 2/3 over the ``active`` rows with m as an array, infinite elsewhere."""
    if zero < 2:
        _, tail, param_bytes, exposed = _tail(st, scenario, dp, tp, 1, zero)
        return zero, tail[rows], param_bytes[:, rows], exposed[rows]
    tail, exposed = np.full(rows.size, np.inf), np.full(rows.size, np.inf)
    param_bytes = np.full((st.params.shape[0], rows.size), np.inf)
    if active.any():
        i = rows[active]
        sub = Stages(*(getattr(st, f)[:, i] for f in st.__dataclass_fields__))
        tp_i = np.broadcast_to(tp, (st.params.shape[1],))[i]
        _, tail[active], param_bytes[:, active], exposed[active] = _tail(sub, scenario, dp, tp_i, m_row[active], zero)
    return zero, tail, param_bytes, exposed


def _tail(st: Stages, scenario: Scenario, dp: int, tp, m: int, zero: int):
    """(zero, exposed data-parallel communication + optimizer, parameter bytes per stage, exposed)."""
    _, exposed, opt_s, mem = data_parallel(st, scenario, dp, tp, m, zero)
    return zero, (exposed + opt_s).max(0), mem.total_bytes, exposed.max(0)


def _v_star(vs: np.ndarray, tau_max, c):
    """The largest allowed V with V x c <= the busiest stage's time per item (1 when none)."""
    ok = vs[:, None] * np.asarray(c)[None] <= np.asarray(tau_max)[None]
    return np.where(ok, vs[:, None], 1).max(0)
