"""Which runs to measure next: the few that shrink the 80 % interval at a target the most per hour.

For a target (M*, D*) and the law's runs, each candidate run (width w, dataset size D,
one more seed) is scored by simulation: its outcome is drawn from the law's predictive
distribution at (M(w), D) (:func:`.uncertainty.predictive_draws`), appended to the runs,
and the law's form is refitted with a small bootstrap; the gain is the mean drop, over
``n_sim`` draws, of the 80 % interval's log width ln(hi/lo) at the target, against a refit of
the runs as they are with the same bootstrap seed (common random numbers: the difference is
the run's, not the smaller bootstrap's).  The cost of a
run is its median predicted steps × the predicted time per step of that width on a
hardware profile (this machine's calibrated one by default).  Candidates: every measured
width and 2× and 4× the widest, at every measured dataset size and 3× the largest, unless the
runs' corpus (their ``corpus`` column) holds fewer training tokens than that
(:func:`.data.corpus_train_tokens`).
Runs are listed by gain per hour; ``budget_hours`` keeps the best that fit the budget.

The gain is what the run teaches *if the law is right*: outcomes are drawn from the law
itself, so a real outcome that contradicts it (steps falling faster with width than the
narrower runs say) raises the extrapolation error τ and can widen the interval instead
(measured: docs/accuracy.md, "Step laws").  Read the gains as upper bounds.
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..errors import PerfmodelError
from .data import corpus_train_tokens
from .law import StepLaw

N_SIM = 3          # simulated outcomes per candidate
SIM_BOOT = 30      # bootstrap draws per refit (enough for an 80 % interval's width)


def _log_width(law: StepLaw, M, D) -> float:
    from .uncertainty import interval
    iv = interval(law, M, D)["interval_80"]
    return math.log(iv[1] / iv[0]) if iv else math.nan


def _model_knobs(model: str, R) -> dict:
    from ..architectures import get_spec
    known = get_spec(model).knobs
    knobs = json.loads(str(R["knobs"][0])) if "knobs" in R and len(R["knobs"]) else {}
    return {k: v for k, v in knobs.items() if k in known}


def _params_of(model, width, knobs, R) -> float:
    measured = R["params"][R["width"] == width]
    if len(measured):
        return float(measured[0])
    from ..architectures import build_graph
    return float(build_graph(model, int(width), "fp32", **knobs).params)


def suggest(law: StepLaw, runs: dict, target_params: float, target_dataset: float, hw,
            budget_hours: float | None = None, n_sim: int = N_SIM, seed: int = 0, top: int = 5,
            n_boot: int = SIM_BOOT) -> dict:
    """Candidate runs ranked by the shrink of the target's 80 % interval per hour of this machine."""
    from ..predict import predict
    from .fit import fit_law
    from .uncertainty import predictive_draws
    if not law.draws:
        raise PerfmodelError("steps suggest needs a law with parameter draws; refit it with perfmodel steps fit")
    R = {c: v[runs["batch"] == law.batch_ref] for c, v in runs.items()}
    if not len(R["width"]):
        raise PerfmodelError(f"the runs hold no run at the law's batch {law.batch_ref:g}")
    model = law.model
    knobs = _model_knobs(model, R)
    batch = int(law.batch_ref)
    now = _log_width(law, target_params, target_dataset)
    widths = sorted(set(float(w) for w in R["width"]))
    sizes = sorted(set(float(d) for d in R["dataset_size"]))
    cand_w = widths + [2 * widths[-1], 4 * widths[-1]]
    cand_d = sizes + [3 * sizes[-1]]
    corpora = sorted({str(c) for c in R.get("corpus", ()) if str(c) and not str(c).startswith("markov")})
    limit = corpus_train_tokens(model, corpora[0]) if len(corpora) == 1 else None
    if limit:   # a run needs D training tokens of the runs' corpus: no candidate beyond it
        cand_d = [d for d in cand_d if d <= limit] or sizes
    rng = np.random.default_rng(seed)
    seeds = [int(x) for x in rng.integers(1 << 30, size=n_sim)]

    def refit(runs_, s):
        r = fit_law(runs_, form=law.form, n_boot=n_boot, seed=s, check_coverage=False)
        r.b_noise, r.batch_law = law.b_noise, law.batch_law
        return _log_width(r, target_params, target_dataset)

    base = [refit(R, s) for s in seeds]
    rows = []
    for w in cand_w:
        M = _params_of(model, w, knobs, R)
        step_s = predict(model, int(w), hw, optimizer="adam", batch=batch, **knobs).time_per_step_s
        for D in cand_d:
            draws = predictive_draws(law, M, D)
            steps = float(np.median(draws))
            gains = []
            for s, b in zip(seeds, base, strict=True):
                new = {"width": w, "params": M, "dataset_size": D, "batch": float(batch),
                       "seed": float(R["seed"].max() + 1), "steps_to_min": float(draws[rng.integers(len(draws))]),
                       "capped": False}
                sim = {c: np.append(v, new.get(c, v[0] if v.dtype == object else np.nan)) for c, v in R.items()}
                sim["steps_to_converge"] = sim["steps_to_min"]
                gains.append(b - refit(sim, s))
            hours = steps * step_s / 3600
            gain = float(np.mean(gains))
            rows.append({"width": int(w), "params": M, "dataset_size": D, "seeds": 1, "predicted_steps": steps,
                         "time_per_step_s": step_s, "cost_hours": hours, "log_width_gain": gain,
                         "gain_per_hour": gain / hours if hours > 0 else math.inf,
                         "new_width": w not in widths, "new_dataset_size": D not in sizes})
    rows.sort(key=lambda r: -r["gain_per_hour"])
    chosen, spent = [], 0.0
    for r in rows:
        if len(chosen) >= top:
            break
        if r["log_width_gain"] <= 0 or (budget_hours is not None and spent + r["cost_hours"] > budget_hours):
            continue
        chosen.append(r)
        spent += r["cost_hours"]
    return {"target": {"params": target_params, "dataset_size": target_dataset},
            "interval_80_log_width_now": now, "hardware": hw.name, "budget_hours": budget_hours,
            "suggested": chosen, "total_hours": spent, "candidates": len(rows), "ranked": rows,
            "method": f"{n_sim} simulated outcomes per candidate from the law's predictive draws, refit of the "
                      f"{law.form} form with {n_boot} bootstrap draws; gain = drop of ln(hi/lo) of the 80% interval "
                      "if the law is right (an upper bound: an outcome that contradicts it widens the interval)"}
