"""Fit step-count laws to measured runs, choosing the form by how well it extrapolates.

Runs at the most common batch size of the CSV (``batch_ref``) enter the size law.
Candidate forms (:mod:`.forms`) are each fitted (log-space least squares, capped runs
as lower bounds) and scored by cross-validated extrapolation: refit without the widest
width, predict it; with ≥ 5 widths also without the two widest.  The score is the
median |predicted/observed − 1| over the held-out runs (a capped run counts only when
predicted below its bound).  The chosen form is the one with the fewest parameters whose
score is within :data:`CHOICE_SLACK` of the best (a one-standard-error style rule that
keeps an extra parameter only when it extrapolates clearly better).

The chosen form is then refitted on all runs; a bootstrap over runs gives parameter
draws (kept in the law file) and 95 % intervals; σ and τ of :mod:`.uncertainty` come
from the residuals and the held-out errors.  The 80 % interval is checked honestly:
the whole procedure (choice, fit, draws, σ, τ) is rerun without the widest width(s)
and the share of their runs inside the interval is recorded as ``coverage_80``.
The batch law is :mod:`.batchlaw`'s.
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..errors import PerfmodelError
from .batchlaw import fit_batch_law
from .fit_report import format_report, provenance, summary
from .forms import FLOOR, FORMS, Scaled, fit_form, get_form, log_pred, natural, with_floor
from .law import DRAW_FIELDS, StepLaw
from .runs import NUMERIC, REQUIRED, read_runs, subset, tokens_per_example
from .uncertainty import predictive_draws, tau_from_heldout

__all__ = ["fit_law", "fit_batch_law", "read_runs", "REQUIRED", "NUMERIC", "format_report", "provenance",
           "summary", "TARGETS"]
TARGETS = ("steps_to_min", "steps_to_converge")
UNITS = {"charlm": "characters", "wordlm": "words", "mlp": "examples"}
CHOICE_SLACK = (0.10, 0.005)   # within 10 % (relative) + 0.5 points of the best CV error
COVERAGE_BOOT = 100            # bootstrap draws inside the coverage check


def _folds(widths) -> list[tuple[float, ...]]:
    """Held-out width sets: the widest; with ≥ 5 widths also the two widest."""
    w = sorted(widths)
    return [tuple(w[-1:])] + ([tuple(w[-2:])] if len(w) >= 5 else [])


class _Data:
    """The size-law runs with their steps per epoch at batch_ref, D/(B_ref·T)."""

    def __init__(self, R, target, batch_ref, T):
        self.R, self.target, self.batch_ref, self.T = R, target, batch_ref, T
        self.spe = R["dataset_size"] / (batch_ref * T)

    def part(self, mask) -> _Data:
        return _Data(subset(self.R, mask), self.target, self.batch_ref, self.T)

    def fit(self, form, x0=None):
        sc = Scaled(self.R["params"], self.R["dataset_size"], self.R[self.target], self.spe)
        return sc, fit_form(form, sc, self.R["capped"], x0)

    def predict(self, form, sc, theta, other: _Data):
        return sc.S0 * np.exp(log_pred(form, theta, *sc.at(other.R["params"], other.R["dataset_size"], other.spe)))

    @property
    def n(self):
        return len(self.R["width"])


def _one_sided(pred, obs, capped):
    """log(pred/obs), with a capped run's error counted only when predicted below its bound."""
    e = np.log(pred / obs)
    return np.where(capped, np.minimum(e, 0.0), e)


def _heldout(form, data: _Data, train, label: dict) -> dict | None:
    """Fit ``form`` on the runs ``train`` selects, predict the others: their log errors and their
    distance in e-folds beyond the kept runs' largest M and D (see :mod:`.uncertainty`)."""
    tr, te = data.part(train), data.part(~train)
    if te.n == 0 or tr.n < form.n_params + 2 or len(np.unique(tr.R["width"])) < 2:
        return None
    sc, res = tr.fit(form)
    if res is None:
        return None
    pred = tr.predict(form, sc, res.x, te)
    e = _one_sided(pred, te.R[data.target], te.R["capped"])
    x = (np.maximum(0.0, np.log(te.R["params"] / tr.R["params"].max()))
         + np.maximum(0.0, np.log(te.R["dataset_size"] / tr.R["dataset_size"].max())))
    return {**label, "n": te.n, "median_abs_rel_error": float(np.median(np.abs(np.expm1(e)))),
            "log_errors": e, "distance": x, "pred": pred, "k_without": float(res.x[form.params.index("k")]),
            "test": te}


def _width_folds(R) -> list[tuple[dict, np.ndarray]]:
    """(label, training mask) per leave-the-widest-width(s)-out fold (:func:`_folds`)."""
    return [({"held_out_widths": [float(w) for w in held]}, ~np.isin(R["width"], held))
            for held in _folds(np.unique(R["width"]))]


def _size_fold(R) -> tuple[dict, np.ndarray] | None:
    """(label, training mask) of the leave-the-largest-dataset-size-out fold, with >= 3 sizes."""
    sizes = np.unique(R["dataset_size"])
    return (({"held_out_dataset_sizes": [float(sizes[-1])]}, R["dataset_size"] < sizes[-1])
            if len(sizes) >= 3 else None)


def cross_validate(form, data: _Data) -> list[dict]:
    """Leave-the-widest-width(s)-out folds of ``form`` on ``data``: held-out errors per fold."""
    if len(np.unique(data.R["width"])) < 3:
        return []
    folds = (_heldout(form, data, train, label) for label, train in _width_folds(data.R))
    return [f for f in folds if f is not None]


def dataset_fold(form, data: _Data) -> dict | None:
    """The leave-the-largest-dataset-size-out fold (with >= 3 sizes): the extrapolation in D."""
    fold = _size_fold(data.R)
    return _heldout(form, data, fold[1], fold[0]) if fold else None


def _score(folds) -> float | None:
    if not folds:
        return None
    return float(np.median(np.abs(np.expm1(np.concatenate([f["log_errors"] for f in folds])))))


def choose(forms, scores: dict) -> str:
    """Fewest parameters whose CV score is within CHOICE_SLACK of the best; first form without CV."""
    scored = {f.name: scores[f.name] for f in forms if scores.get(f.name) is not None}
    if not scored:
        return forms[0].name
    best = min(scored.values())
    ok = [f for f in forms if f.name in scored and scored[f.name] <= best * (1 + CHOICE_SLACK[0]) + CHOICE_SLACK[1]]
    return min(ok, key=lambda f: (f.n_params, list(scored).index(f.name))).name


def _procedure(data: _Data, forms, n_boot, seed):
    """Choice by CV, fit, σ, τ and bootstrap draws on ``data``."""
    cv = {f.name: cross_validate(f, data) for f in forms}
    scores = {name: _score(folds) for name, folds in cv.items()}
    form = get_form(choose(forms, scores))
    sc, best = data.fit(form)
    if best is None:
        raise PerfmodelError(f"size law: the {form.name} form could not be fitted to {data.n} runs")
    point = natural(form, best.x, sc, data.batch_ref, data.T)
    r = (log_pred(form, best.x, sc.m, sc.d, sc.e) - sc.log_s)[~data.R["capped"]]
    dof = len(r) - form.n_params
    sigma = float(math.sqrt(np.sum(r ** 2) / dof)) if dof >= 1 else 0.0
    d_fold = dataset_fold(form, data)
    folds = cv[form.name] + ([d_fold] if d_fold else [])
    tau = tau_from_heldout(np.concatenate([f["log_errors"] for f in folds]),
                           np.concatenate([f["distance"] for f in folds]), sigma) if folds else 0.0
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, data.n, data.n)
        if len(np.unique(data.R["width"][idx])) < 2:
            continue
        part = data.part(idx)
        b_sc, b_fit = part.fit(form, x0=best.x)
        if b_fit is not None:
            draws.append(natural(form, b_fit.x, b_sc, data.batch_ref, data.T))
    return {"form": form, "sc": sc, "best": best, "point": point, "sigma": sigma, "tau": tau, "draws": draws,
            "cv": cv, "scores": scores}


def _draw_table(draws, point) -> dict[str, list[float]] | None:
    if len(draws) < 20:
        return None
    return {f: [float(d[f]) for d in draws] for f in DRAW_FIELDS if point.get(f) is not None}


def _range(R) -> dict[str, list[float]]:
    return {"M": [float(R["params"].min()), float(R["params"].max())],
            "D": [float(R["dataset_size"].min()), float(R["dataset_size"].max())]}


def coverage(data: _Data, forms, seed) -> dict | None:
    """Share of held-out uncapped runs inside the 80 % (and 95 %) interval of a law chosen, fitted
    and given draws without them: the widest width(s) (with >= 4 widths) and the largest dataset
    size (with >= 3 sizes)."""
    n_widths = len(np.unique(data.R["width"]))
    folds = _width_folds(data.R) if n_widths >= 4 else []
    size_fold = _size_fold(data.R) if n_widths >= 3 else None
    folds += [size_fold] if size_fold else []
    rows = []
    for label, train in folds:
        tr, te = data.part(train), data.part(~train & ~data.R["capped"])
        if te.n == 0:
            continue
        res = _procedure(tr, forms, COVERAGE_BOOT, seed)
        law = _law_from(res, tr, "coverage", seed)
        if not law.draws:
            continue
        d = predictive_draws(law, te.R["params"], te.R["dataset_size"])
        q = np.percentile(d, [2.5, 10, 90, 97.5], axis=0)
        obs = te.R[data.target]
        rows.append({**label, "n": te.n, "form": res["form"].name,
                     "inside_80": int(((obs >= q[1]) & (obs <= q[2])).sum()),
                     "inside_95": int(((obs >= q[0]) & (obs <= q[3])).sum())})
    if not rows:
        return None
    n = sum(r["n"] for r in rows)
    return {"coverage": sum(r["inside_80"] for r in rows) / n, "coverage_95": sum(r["inside_95"] for r in rows) / n,
            "n": n, "folds": rows, "method": "whole fit rerun without the widest width(s), and without the largest "
            "dataset size; their uncapped runs checked against its 80 % and 95 % intervals"}


def _law_from(res, data: _Data, model, seed) -> StepLaw:
    p, form = res["point"], res["form"]
    law = StepLaw(model=model, a=p["a"], k=p["k"], gamma=p["gamma"], b=p["b"], batch_ref=data.batch_ref,
                  tokens_per_example=data.T, e_min=p.get("e_min"), form=form.name,
                  epochs_min=p["epochs_min"] if form.name.startswith("epochs") else None,
                  target=data.target, n_runs=data.n, draws=_draw_table(res["draws"], p),
                  sigma_log=res["sigma"], tau_extrap=res["tau"], interval_seed=seed, measured_range=_range(data.R),
                  measured_task=measured_task(data.R))
    return law


def measured_task(R) -> dict | None:
    """What every run shared: the model ``knobs`` (the runs' JSON column; a knob whose value varies
    is left out), ``corpus``, ``optimizer`` and ``lr``; None for a runs CSV without those columns."""
    out: dict = {}
    try:
        parsed = [json.loads(v) if str(v).strip() else {} for v in R.get("knobs", ())]
    except json.JSONDecodeError:
        parsed = []     # a hand-written CSV: nothing known about its knobs
    if parsed and all(isinstance(p, dict) for p in parsed):
        out["knobs"] = {k: v for k, v in parsed[0].items() if all(p.get(k) == v for p in parsed)}
    for c in ("corpus", "optimizer", "lr"):
        vals = {str(v) for v in R.get(c, ())}
        if len(vals) == 1:
            v = vals.pop()
            out[c] = float(v) if c == "lr" and v else v
    return out or None


def _ci(draws, form_name) -> dict[str, list[float]]:
    form = get_form(form_name)
    names = ["a", "k"] + (["gamma"] if any(q in form.params for q in ("gamma", "delta")) else [])
    names += ["b"] if "b" in form.params else []
    names += ["epochs_min"] if form.name.startswith("epochs") else []
    names += ["e_min"] if form.name.endswith(FLOOR) else []
    if len(draws) < 20:
        return {}
    return {n: [float(np.percentile([d[n] for d in draws], 2.5)), float(np.percentile([d[n] for d in draws], 97.5))]
            for n in names}


def candidate_forms(form: str | None, free_gamma: bool, plateau: bool):
    if form:
        forms = [get_form(f) for f in str(form).split(",")]
    elif free_gamma:
        forms = [FORMS["power_gamma"]]
    else:
        forms = list(FORMS.values())
    return [with_floor(f) if plateau and not f.name.endswith(FLOOR) else f for f in forms]


def fit_law(runs: dict[str, np.ndarray], free_gamma: bool = False, plateau: bool = False,
            target: str = "steps_to_min", capped: str = "lower-bound", n_boot: int = 200,
            seed: int = 0, tol: float = 0.01, batch_runs: dict[str, np.ndarray] | None = None,
            form: str | None = None, check_coverage: bool = True) -> StepLaw:
    """Fit the size law to ``runs`` (from :func:`read_runs`) and the batch law to ``batch_runs``.

    ``form``: one form name or a comma list to choose from (default: every form of
    :data:`.forms.FORMS`; ``free_gamma`` alone means ``power_gamma``; ``plateau`` adds
    the epoch floor to each).  ``batch_runs`` defaults to ``runs``; the batch law is None
    when no (width, dataset size) has uncapped runs at three or more batch sizes.
    """
    if target not in TARGETS:
        raise PerfmodelError(f"target {target!r} is not allowed; allowed: {', '.join(TARGETS)}")
    if capped not in ("lower-bound", "exclude"):
        raise PerfmodelError(f"capped={capped!r} is not allowed; allowed: lower-bound, exclude")
    models = sorted(set(runs["model"]))
    if len(models) != 1:
        raise PerfmodelError(f"runs mix models {', '.join(models)}; fit one model per CSV")
    if batch_runs is not None and sorted(set(batch_runs["model"])) != models:
        raise PerfmodelError(f"batch runs are for {', '.join(sorted(set(batch_runs['model'])))}, "
                             f"size runs for {models[0]}")
    forms = candidate_forms(form, free_gamma, plateau)
    batches, counts = np.unique(runs["batch"], return_counts=True)
    batch_ref = float(batches[np.argmax(counts)])
    R = subset(runs, runs["batch"] == batch_ref)
    n_zero = int((R[target] <= 0).sum())
    keep = R[target] > 0
    if capped == "exclude":
        keep &= ~R["capped"]
    R = subset(R, keep)
    _check_runs(R, max(f.n_params for f in forms))
    data = _Data(R, target, batch_ref, tokens_per_example(R))
    res = _procedure(data, forms, n_boot, seed)
    law = _law_from(res, data, models[0], seed)
    law.ci = _ci(res["draws"], law.form)
    law.units = {"M": "trainable parameters", "B": "examples per step",
                 "D": f"training-set size in {UNITS.get(models[0], 'model units')}"}
    plateau_note = None
    if law.e_min:
        power = law.a * R["dataset_size"] ** law.gamma * R["params"] ** (-law.k) + law.b
        if not (law.e_min * data.spe > 0.9 * power).any():
            law.e_min, law.ci = None, {p: v for p, v in law.ci.items() if p != "e_min"}
            if law.draws:
                law.draws.pop("e_min", None)
            plateau_note = "not identified: no run sits at the epoch floor; the law has no plateau"
    law.cv = {"rule": f"fewest parameters within {100 * CHOICE_SLACK[0]:.0f}% (+{100 * CHOICE_SLACK[1]:.1f} points) "
              "of the best leave-widest-out median |error|", "chosen": law.form,
              "forms": {name: {"error": res["scores"][name], "n_params": get_form(name).n_params,
                               "folds": [{k: f[k] for k in ("held_out_widths", "n", "median_abs_rel_error")}
                                         for f in folds]} for name, folds in res["cv"].items()}}
    folds = res["cv"][law.form]
    law.heldout_error = folds[0]["median_abs_rel_error"] if folds else None
    heldout = ({"width": folds[0]["held_out_widths"][0], "k_without_it": folds[0]["k_without"],
                "median_abs_rel_error": folds[0]["median_abs_rel_error"],
                "runs": [{"dataset_size": float(D), "observed": float(o), "predicted": float(p)} for D, o, p in
                         zip(folds[0]["test"].R["dataset_size"], folds[0]["test"].R[target], folds[0]["pred"],
                             strict=True)]}
               if folds else {"skipped": "needs at least 3 widths with enough runs below the widest"})
    law.coverage_80 = coverage(data, forms, seed) if check_coverage and n_boot else None
    law.diagnostics = {"n_capped": int(R["capped"].sum()), "n_zero_steps_dropped": n_zero, "plateau": plateau_note,
                       "capped_treatment": capped, "n_bootstrap": len(res["draws"]),
                       "fit_cost": float(res["best"].cost), "heldout": heldout,
                       "residuals": residual_report(law, R, target)}
    law.batch_law = fit_batch_law(runs if batch_runs is None else batch_runs, target, tol=tol,
                                  n_boot=n_boot, seed=seed)
    if law.batch_law:
        law.b_noise = law.batch_law["b_noise"]
    return law


def _check_runs(R, n_params, what="size law"):
    n = len(R["width"])
    widths = np.unique(R["width"])
    if len(widths) < 2:
        raise PerfmodelError(f"{what}: all {n} usable runs have width {widths[0]:g}; fitting k needs "
                             f"at least 2 widths" if n else f"{what}: no usable runs (all capped and excluded, "
                             "or with 0 steps)")
    if n < n_params + 2:
        raise PerfmodelError(f"{what}: too few runs ({n} usable) for {n_params} parameters; "
                             f"need at least {n_params + 2}")


def _slope(x, y):
    """Least-squares slope of y on x and its standard error (nan when undefined)."""
    if len(np.unique(x)) < 2:
        return math.nan, math.nan
    X = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(x) - 2
    if dof < 1:
        return float(coef[1]), math.nan
    s2 = float(np.sum((y - X @ coef) ** 2) / dof)
    se = math.sqrt(s2 / float(np.sum((x - x.mean()) ** 2)))
    return float(coef[1]), se


def residual_report(law, R, target):
    """Log residuals (obs/pred) on uncapped runs: per width the slope vs log D, per D the slope vs log M."""
    ok = ~R["capped"]
    pred = law.steps(R["params"], R["dataset_size"], R["batch"])
    r = np.log(R[target][ok] / pred[ok])
    W, D, M = R["width"][ok], R["dataset_size"][ok], R["params"][ok]
    out = {"rms_log_residual": float(np.sqrt(np.mean(r ** 2))) if len(r) else math.nan,
           "capped_below_bound": int((pred[~ok] < R[target][~ok]).sum()),  # law under a lower bound
           "per_width": [], "per_dataset_size": []}
    for key, group, x, name in (("per_width", W, D, "slope_vs_logD"), ("per_dataset_size", D, M, "slope_vs_logM")):
        for g in np.unique(group):
            sel = group == g
            slope, se = _slope(np.log(x[sel]), r[sel])
            out[key].append({key[4:]: float(g), "n": int(sel.sum()), "mean_log_residual": float(r[sel].mean()),
                             name: slope, "se": se,
                             "systematic": bool(abs(slope) > 0.1 and abs(slope) > 2 * se)
                             if np.isfinite(se) else None})
    return out
