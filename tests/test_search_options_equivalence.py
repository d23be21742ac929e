"""The option search (:func:`perfmodel.parallel.search_options.best_by_split`: every micro-batch count
of a (pp, dp) in one vectorized pass, ZeRO-0/1 tails shared) returns exactly what a brute-force
reference returns: one micro-batch count at a time, each candidate (recompute, V, ZeRO) costed on its
own, the fastest that fits picked configuration by configuration in a Python loop.  Equal means
equal: the plans' dicts (rows, choices, curves) compare with ``==``, floats included."""
import numpy as np
import pytest

from perfmodel.hardware import load
from perfmodel.parallel import search as search_mod
from perfmodel.parallel.options import RECOMPUTE_MODES, ParallelOptions
from perfmodel.parallel.pipeline import Stages, in_flight, schedule_time
from perfmodel.parallel.search import SearchSpace, plan
from perfmodel.parallel.search_options import OptionSearch, best_by_split
from perfmodel.parallel.step import data_parallel, p2p_item_s, scatter_gather, virtual_stage_choices
from perfmodel.scenario import Scenario
from perfmodel.total import load_law, shipped_law_path

H100 = load("H100-SXM5")


def _reference_one_m(valid, stages_by_mode, scenario, search, dp, tp, m, steps, cyclic, layers, pp):
    """The search's rule for one m, candidate by candidate (module docstring of search_options)."""
    opts, cap = scenario.options, scenario.hardware.memory_capacity_bytes
    n = valid.size
    out = {"time_per_step_s": np.full(n, np.inf), "fits": np.zeros(n, bool),
           "per_device_memory_bytes": np.full(n, np.inf), "bubble_fraction": np.zeros(n), "comm_time_s": np.zeros(n),
           "zero": np.zeros(n, int), "recompute": np.zeros(n, int), "virtual_stages": np.ones(n, int),
           "sequence_parallel": np.zeros(n, bool), "ep": np.full(n, opts.ep)}
    idx = np.flatnonzero(valid)
    if not idx.size:
        return out
    tp = np.asarray(tp)[idx]
    zeros = [z for z in search.zero if (z < 3 or pp == 1) and (z == 0 or dp > 1)
             and not (z == 1 and m == 1 and 2 in search.zero)] or [0]
    vs = (virtual_stage_choices(layers, pp) if search.virtual_stages and not cyclic and opts.schedule == "1f1b"
          else [opts.virtual_stages])
    cands = []                     # (time, fits, memory, bubble, comm, zero, recompute index, V) arrays over idx
    need = np.ones(idx.size, bool)
    for mode, full in stages_by_mode.items():
        if not need.any():         # every configuration fits some lighter mode at every (V, ZeRO)
            break
        st = Stages(*(getattr(full, f)[:, idx] for f in full.__dataclass_fields__))
        stage_s = st.compute_s + st.tp_s + st.ep_s
        busiest = stage_s.argmax(0)
        cols = np.arange(idx.size)
        model_comm = m * (st.tp_s[busiest, cols] + st.ep_s[busiest, cols])
        c = p2p_item_s(st, scenario.hardware, dp, tp, steps, scatter_gather(opts))
        tau_max = stage_s.max(0) / steps
        v_star = np.asarray([max([v for v in vs if v * c[j] <= tau_max[j]], default=1) for j in cols])
        fit_all = np.ones(idx.size, bool)
        for v in ([v_star, 1] if (v_star > 1).any() else [1]):
            pipe, bubble = schedule_time(stage_s, c, m, steps, cyclic, v, not opts.overlap_p2p)
            pipe0, _ = schedule_time(stage_s, 0 * c, m, steps, cyclic, v)
            acts = st.act_bytes * in_flight(m, stage_s.shape[0], opts.schedule, v) + st.act_peak_bytes
            for z in zeros:
                _, exposed, opt_s, mem = data_parallel(st, scenario, dp, tp, m, z)
                memory = (mem.total_bytes + acts).max(0)
                fits = memory <= cap
                fit_all &= fits
                cands.append((pipe + (exposed + opt_s).max(0), fits, memory, bubble,
                              model_comm + pipe - pipe0 + exposed.max(0), z, RECOMPUTE_MODES.index(mode),
                              np.broadcast_to(v, idx.shape)))
        need &= ~fit_all
    for j, i in enumerate(idx):    # the first fastest candidate that fits; else the first smallest memory
        fitting = [k for k, cd in enumerate(cands) if cd[1][j]]
        by = 0 if fitting else 2   # time among those that fit, else memory among all
        best = min(fitting or range(len(cands)), key=lambda k, j=j, by=by: cands[k][by][j])
        cd = cands[best]
        for f, val in zip(("time_per_step_s", "fits", "per_device_memory_bytes", "bubble_fraction", "comm_time_s"),
                          cd[:5], strict=True):
            out[f][i] = val[j]
        out["zero"][i], out["recompute"][i], out["virtual_stages"][i] = cd[5], cd[6], cd[7][j]
        out["sequence_parallel"][i] = opts.sequence_parallel and tp[j] > 1
    return out


def _reference_by_split(valid_by_m, stages_by_mode, scenario, search, dp, tp, steps, cyclic, layers, pp):
    return {m: _reference_one_m(v, stages_by_mode, scenario, search, dp, tp, m, steps, cyclic, layers, pp)
            for m, v in valid_by_m.items()}


CASES = {   # small, but each exercises what the vectorized pass shares or leaves out
    "dense, V* > 1, m = 1 and m > 1": ("transformer", {"layers": 8}, [512, 1024], 16, (16, 64), ParallelOptions()),
    "memory-bound: recompute and ZeRO-3": ("transformer", {"layers": 8, "seq_len": 4096}, [4096, 6144], 8,
                                           (8, 32), ParallelOptions()),
    "MoE: expert-parallel degrees": ("transformer", {"layers": 4, "experts": 4}, [512], 8, (8, 32),
                                     ParallelOptions()),
    "gpipe, tree all-reduce": ("transformer", {"layers": 4}, [512], 8, (8, 32),
                               ParallelOptions(schedule="gpipe", algorithm="tree")),
    "recurrent (cyclic pipeline)": ("wordlm", {"layers": 4}, [256], 8, (8, 32), ParallelOptions()),
}


@pytest.mark.parametrize("case", CASES)
def test_option_search_equals_brute_force(case, monkeypatch):
    model, knobs, widths, devices, batches, opts = CASES[case]
    s = Scenario(model, H100, knobs, "bf16", "adam", opts)
    space = SearchSpace(devices=devices, batches=batches, options=OptionSearch())
    law = load_law(shipped_law_path("charlm"))
    fast = plan(s, widths, space, 1e9, law).to_dict()
    monkeypatch.setattr(search_mod, "best_by_split", _reference_by_split)
    slow = plan(s, widths, space, 1e9, law).to_dict()
    assert fast == slow
    assert any(r["fits"] for r in fast["rows"])


def test_the_cases_reach_the_options_the_pass_treats_apart():
    """Across CASES' passes some configuration picks each recompute mode, V > 1, ZeRO 1, 2 and 3 and ep > 1,
    and both m = 1 and m > 1 are costed in one pass (so the equality above covers them)."""
    seen = {"recompute": set(), "zero": set(), "v": set(), "ep": set(), "mixed_m": False}

    def spy(valid_by_m, stages_by_mode, scenario, *args):
        found = best_by_split(valid_by_m, stages_by_mode, scenario, *args)
        ms = [m for m, v in valid_by_m.items() if v.any()]
        seen["mixed_m"] |= 1 in ms and len(ms) > 1
        for m, f in found.items():
            ok = valid_by_m[m]
            seen["recompute"] |= set(f["recompute"][ok])
            seen["zero"] |= set(f["zero"][ok])
            seen["v"] |= set(f["virtual_stages"][ok])
            seen["ep"] |= {scenario.options.ep} if ok.any() else set()
        return found

    law = load_law(shipped_law_path("charlm"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search_mod, "best_by_split", spy)
        for model, knobs, widths, devices, batches, opts in CASES.values():
            s = Scenario(model, H100, knobs, "bf16", "adam", opts)
            plan(s, widths, SearchSpace(devices=devices, batches=batches, options=OptionSearch()), 1e9, law)
    assert seen["recompute"] >= {0, 1, 2} and seen["zero"] >= {1, 2, 3}
    assert max(seen["v"]) > 1 and max(seen["ep"]) > 1 and seen["mixed_m"]
