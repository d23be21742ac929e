"""Fit step-count laws to measured runs.  Imports no torch.

Size law, at the most common batch size of the CSV (``batch_ref``)::

    S = a · D^γ · M^(−k) + b               (γ = 1 unless ``free_gamma``)
    S = smooth-max(that, e_min · steps_per_epoch)    with ``plateau``

fitted in log space, residual r = log S_pred − log S_obs, with a robust loss
(``scipy.optimize.least_squares(loss="soft_l1", f_scale=0.1)``), from several
starts; D and M are scaled by their geometric means inside the fit for
conditioning.  Capped runs (training hit the epoch cap) are lower bounds: by
default their residual counts only when the law predicts fewer steps than
observed (``capped="lower-bound"``), or they are dropped (``"exclude"``).
95 % intervals come from a bootstrap over runs.  Held-out check: refit without
the largest width, predict it, report the median |relative error|.  Residual
diagnostics: per width, the slope of the log residual against log D (a
systematic trend the law misses shows as a slope well away from 0).

Batch law (McCandlish et al. 2018, eq. 2.11): S(B) = S_min (1 + B_noise/B),
fitted to a (width, dataset size) measured at three or more batch sizes.
Following the paper, S counts steps to reach a common loss: the largest of the
runs' minimum validation losses times (1 + tol), read from the stored
validation curves (``val_curve`` column; without it, the target column).
"""
from __future__ import annotations

import csv
import datetime
import json
import math
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from ..errors import PerfmodelError
from .law import StepLaw, jsonable

REQUIRED = ("model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min",
            "steps_to_converge", "min_val_loss", "epochs", "wall_s")
NUMERIC = REQUIRED[1:]
TARGETS = ("steps_to_min", "steps_to_converge")
F_SCALE = 0.1          # soft_l1 scale in log units: residuals beyond ~10 % count linearly
SMOOTH = 10.0          # sharpness of the smooth max with the plateau, in log space
UNITS = {"charlm": "characters", "wordlm": "words", "mlp": "examples"}


# ---------------------------------------------------------------- reading runs

def read_runs(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a runs CSV as arrays; checks required columns and finite values (one-line errors)."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except OSError as e:
        raise PerfmodelError(f"cannot read runs file {str(path)!r}: {e.strerror}") from None
    if not rows:
        raise PerfmodelError(f"runs file {str(path)!r} has no runs")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PerfmodelError(f"runs file {str(path)!r} lacks column(s) {', '.join(missing)}")
    rows = [r for r in rows if None not in r.values()]  # a row cut short by an interrupted write
    cols = {c: np.array([r[c] for r in rows], dtype=object) for c in header}
    for c in NUMERIC + tuple(c for c in ("steps_per_epoch", "tokens_per_example", "b_simple",
                                         "b_diversity") if c in header):
        try:
            cols[c] = np.array([float(v) if v not in ("", None) else math.nan for v in cols[c]])
        except ValueError:
            bad = next(v for v in cols[c] if not _is_float(v))
            raise PerfmodelError(f"column {c} of {str(path)!r} holds non-number {bad!r}") from None
        if c in NUMERIC and not np.isfinite(cols[c]).all():
            i = int(np.flatnonzero(~np.isfinite(cols[c]))[0])
            raise PerfmodelError(f"column {c} of {str(path)!r} has non-finite value {cols[c][i]} "
                                 f"(data row {i + 1})")
    cols["capped"] = (np.array([str(v).strip().lower() in ("true", "1", "yes") for v in cols["capped"]])
                      if "capped" in cols else np.zeros(len(rows), bool))
    return cols


def _is_float(v):
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- size law

def _n_params(free_gamma, plateau):
    return 3 + free_gamma + plateau  # log a, k, b (+ gamma) (+ log e_min)


def _predict(theta, m, d, spe, free_gamma, plateau):
    """log S_pred / S0 for scaled m = M/M0, d = D/D0 and steps per epoch / S0."""
    la, k = theta[0], theta[1]
    gamma = theta[2] if free_gamma else 1.0
    b = theta[2 + free_gamma]
    log_s = np.log(np.exp(la) * d ** gamma * m ** (-k) + b)
    if plateau:
        log_floor = theta[-1] + np.log(spe)
        log_s = np.logaddexp(SMOOTH * log_s, SMOOTH * log_floor) / SMOOTH
    return log_s


def _fit_once(x0, m, d, spe, log_s, lower, free_gamma, plateau):
    def resid(theta):
        r = _predict(theta, m, d, spe, free_gamma, plateau) - log_s
        return np.where(lower, np.minimum(r, 0.0), r)

    lo = [-np.inf, -5.0] + ([0.0] if free_gamma else []) + [0.0] + ([-np.inf] if plateau else [])
    hi = [np.inf, 5.0] + ([3.0] if free_gamma else []) + [np.inf] + ([np.inf] if plateau else [])
    x0 = np.clip(x0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    return least_squares(resid, x0, bounds=(lo, hi), loss="soft_l1", f_scale=F_SCALE)


def _starts(free_gamma, plateau, log_s, spe):
    for k in (0.0, 0.5, 1.0, 2.0):
        for b in (0.0, 0.5):
            for gamma in ((0.5, 1.0) if free_gamma else (None,)):
                x = [math.log(1 - b), k] + ([gamma] if free_gamma else []) + [b]
                if plateau:
                    x.append(float(np.min(log_s - np.log(spe))))
                yield np.array(x)


class _Scaled:
    """Runs scaled by geometric means (M0, D0, S0), and back to natural units."""

    def __init__(self, M, D, S, spe):
        self.M0, self.D0, self.S0 = (float(np.exp(np.mean(np.log(v)))) for v in (M, D, S))
        self.m, self.d, self.log_s = M / self.M0, D / self.D0, np.log(S / self.S0)
        self.spe = spe / self.S0

    def natural(self, theta, free_gamma, plateau) -> dict[str, float]:
        gamma = float(theta[2]) if free_gamma else 1.0
        k = float(theta[1])
        a = math.exp(theta[0]) * self.S0 * self.D0 ** (-gamma) * self.M0 ** k
        out = {"a": a, "k": k, "gamma": gamma, "b": float(theta[2 + free_gamma]) * self.S0}
        if plateau:
            out["e_min"] = math.exp(theta[-1])
        return out


def _fit_size(M, D, S, spe, lower, free_gamma, plateau, x0=None):
    sc = _Scaled(M, D, S, spe)
    starts = [x0] if x0 is not None else list(_starts(free_gamma, plateau, sc.log_s, sc.spe))
    best = min((_fit_once(x, sc.m, sc.d, sc.spe, sc.log_s, lower, free_gamma, plateau) for x in starts),
               key=lambda r: r.cost)
    return sc, best


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


def _subset(R, mask):
    return {c: v[mask] for c, v in R.items()}


def fit_law(runs: dict[str, np.ndarray], free_gamma: bool = False, plateau: bool = False,
            target: str = "steps_to_min", capped: str = "lower-bound", n_boot: int = 200,
            seed: int = 0, tol: float = 0.01, batch_runs: dict[str, np.ndarray] | None = None) -> StepLaw:
    """Fit the size law to ``runs`` (from :func:`read_runs`) and the batch law to ``batch_runs``.

    ``batch_runs`` defaults to ``runs``; the batch law is left out (None) when no
    (width, dataset size) has uncapped runs at three or more batch sizes.
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
    if plateau and "steps_per_epoch" not in runs:
        raise PerfmodelError("--plateau needs column steps_per_epoch in the runs file")
    batches, counts = np.unique(runs["batch"], return_counts=True)
    batch_ref = float(batches[np.argmax(counts)])
    R = _subset(runs, runs["batch"] == batch_ref)
    n_zero = int((R[target] <= 0).sum())
    keep = R[target] > 0
    if capped == "exclude":
        keep &= ~R["capped"]
    R = _subset(R, keep)
    P = _n_params(free_gamma, plateau)
    _check_runs(R, P)
    spe = R["steps_per_epoch"] if plateau else np.ones(len(R["width"]))
    sc, best = _fit_size(R["params"], R["dataset_size"], R[target], spe, R["capped"], free_gamma, plateau)
    point = sc.natural(best.x, free_gamma, plateau)

    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(R["width"]), len(R["width"]))
        if len(np.unique(R["width"][idx])) < 2:
            continue
        b_sc, b_fit = _fit_size(R["params"][idx], R["dataset_size"][idx], R[target][idx], spe[idx],
                                R["capped"][idx], free_gamma, plateau, x0=best.x)
        boots.append(b_sc.natural(b_fit.x, free_gamma, plateau))
    fitted = [p for p in point if p != "gamma" or free_gamma]
    ci = {p: [float(np.percentile([b[p] for b in boots], 2.5)), float(np.percentile([b[p] for b in boots], 97.5))]
          for p in fitted} if len(boots) >= 20 else {}

    law = StepLaw(model=models[0], a=point["a"], k=point["k"], gamma=point["gamma"], b=point["b"],
                  batch_ref=batch_ref, tokens_per_example=_tokens_per_example(R),
                  e_min=point.get("e_min"), target=target, ci=ci, n_runs=len(R["width"]),
                  units={"M": "trainable parameters", "D": f"training-set size in "
                         f"{UNITS.get(models[0], 'model units')}", "B": "examples per step"})
    plateau_note = None
    if plateau:
        power = point["a"] * R["dataset_size"] ** point["gamma"] * R["params"] ** (-point["k"]) + point["b"]
        if not (point["e_min"] * R["steps_per_epoch"] > 0.9 * power).any():
            law.e_min, law.ci = None, {p: v for p, v in ci.items() if p != "e_min"}
            plateau_note = "not identified: no run sits at the epoch floor; the law has no plateau"
    law.heldout_error, heldout = _heldout(R, target, free_gamma, plateau, spe)
    law.diagnostics = {"n_capped": int(R["capped"].sum()), "n_zero_steps_dropped": n_zero, "plateau": plateau_note,
                       "capped_treatment": capped, "n_bootstrap": len(boots), "fit_cost": float(best.cost),
                       "heldout": heldout, "residuals": _residual_report(law, R, target)}
    law.batch_law = fit_batch_law(runs if batch_runs is None else batch_runs, target, tol=tol,
                                  n_boot=n_boot, seed=seed)
    if law.batch_law:
        law.b_noise = law.batch_law["b_noise"]
    return law


def _tokens_per_example(R) -> float:
    if "tokens_per_example" in R and np.isfinite(R["tokens_per_example"]).all():
        return float(np.median(R["tokens_per_example"]))
    if "steps_per_epoch" in R:
        return float(np.median(R["dataset_size"] / (R["batch"] * R["steps_per_epoch"])))
    return 1.0


def _heldout(R, target, free_gamma, plateau, spe):
    """Fit on all widths but the largest, predict the largest; median |pred/obs − 1| on uncapped runs."""
    widths = np.unique(R["width"])
    if len(widths) < 3:
        return None, {"skipped": "needs at least 3 widths"}
    train, test = R["width"] < widths[-1], (R["width"] == widths[-1]) & ~R["capped"]
    if train.sum() < _n_params(free_gamma, plateau) + 2 or not test.any():
        return None, {"skipped": "too few runs outside (or uncapped runs at) the largest width"}
    sc, fit = _fit_size(R["params"][train], R["dataset_size"][train], R[target][train], spe[train],
                        R["capped"][train], free_gamma, plateau)
    pred = sc.S0 * np.exp(_predict(fit.x, R["params"][test] / sc.M0, R["dataset_size"][test] / sc.D0,
                                   spe[test] / sc.S0, free_gamma, plateau))
    rel = pred / R[target][test] - 1
    err = float(np.median(np.abs(rel)))
    k = float(fit.x[1])
    return err, {"width": float(widths[-1]), "k_without_it": k, "median_abs_rel_error": err,
                 "runs": [{"dataset_size": float(D), "observed": float(o), "predicted": float(p)}
                          for D, o, p in zip(R["dataset_size"][test], R[target][test], pred)]}


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


def _residual_report(law, R, target):
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


# ---------------------------------------------------------------- batch law

def _steps_to_loss(curve_json: str, target_loss: float) -> float:
    for step, loss in json.loads(curve_json):
        if loss <= target_loss:
            return float(step)
    return math.nan


def fit_batch_law(runs, target="steps_to_min", tol=0.01, n_boot=200, seed=0) -> dict | None:
    """S(B) = S_min (1 + B_noise/B) for the (width, D) with the most batch sizes (≥ 3); else None."""
    ok = ~runs["capped"]
    best_key, best_n = None, 2
    for w, D in sorted(set(zip(runs["width"][ok], runs["dataset_size"][ok]))):
        n = len(np.unique(runs["batch"][ok & (runs["width"] == w) & (runs["dataset_size"] == D)]))
        if n > best_n:
            best_key, best_n = (w, D), n
    if best_key is None:
        return None
    sel = ok & (runs["width"] == best_key[0]) & (runs["dataset_size"] == best_key[1])
    B = runs["batch"][sel]
    if "val_curve" in runs and all(runs["val_curve"][sel]):
        loss_target = float(np.max(runs["min_val_loss"][sel])) * (1 + tol)
        S = np.array([_steps_to_loss(c, loss_target) for c in runs["val_curve"][sel]])
        measure = f"steps to val loss {loss_target:.4g} (max over runs of min val loss x {1 + tol:g})"
    else:
        S, measure = runs[target][sel].astype(float), target
    good = np.isfinite(S) & (S > 0)
    B, S = B[good], S[good]
    if len(np.unique(B)) < 3:
        return None

    def fit(Bx, Sx):
        def resid(t):
            return t[0] + np.log1p(np.exp(t[1]) / Bx) - np.log(Sx)
        starts = [np.array([np.log(Sx.min()), np.log(b0)]) for b0 in (np.min(Bx), np.median(Bx), np.max(Bx))]
        return min((least_squares(resid, x0, loss="soft_l1", f_scale=F_SCALE) for x0 in starts),
                   key=lambda r: r.cost).x

    t = fit(B, S)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(B), len(B))
        if len(np.unique(B[idx])) >= 2:
            boots.append(np.exp(fit(B[idx], S[idx])))
    boots = np.array(boots)
    ci = ({"s_min": np.percentile(boots[:, 0], [2.5, 97.5]).tolist(),
           "b_noise": np.percentile(boots[:, 1], [2.5, 97.5]).tolist()} if len(boots) >= 20 else {})
    out = {"width": float(best_key[0]), "dataset_size": float(best_key[1]), "measure": measure,
           "s_min": float(np.exp(t[0])), "b_noise": float(np.exp(t[1])), "ci": ci,
           "runs": [{"batch": float(b), "steps": float(s)} for b, s in sorted(zip(B, S))]}
    if "grad_stats" in runs:
        out.update(_pooled_noise_scale(runs["grad_stats"][sel][good], S))
    return out


def _pooled_noise_scale(stats_json, until_steps) -> dict:
    """Measured B_simple and B_S of the batch-study runs, from the stored gradient statistics.

    As McCandlish et al. (2018, A.1) advise, |G|^2 and tr(Sigma) are averaged over
    probe points before their ratio: at initialisation (step 0) and over the
    probes after step 0 up to each run's step count ``until_steps``.
    """
    init, during = [], []
    for text, until in zip(stats_json, until_steps):
        for g in json.loads(text) if text else []:
            (init if g["step"] == 0 else during if g["step"] <= until else []).append(g)
    out = {}
    for name, pts in (("init", init), ("training", during)):
        if pts:
            g2, tr = np.mean([p["g2"] for p in pts]), np.mean([p["trace_sigma"] for p in pts])
            out[f"b_simple_{name}"] = float(tr / g2) if g2 > 0 else math.inf
            out[f"b_diversity_{name}"] = float(np.median([p["b_diversity"] for p in pts]))
            out[f"probe_points_{name}"] = len(pts)
    if during:
        out["probe_examples"] = sorted({int(p["n"]) for p in during})
    return out


# ---------------------------------------------------------------- report

def provenance(command: str, runs_path: str | Path, law: StepLaw) -> dict:
    return {"command": command, "runs_file": str(runs_path), "n_runs": law.n_runs,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "fitted_by": "perfmodel.steps.fit.fit_law"}


def summary(law: StepLaw) -> dict:
    """The ``--json`` view: parameters, intervals, held-out error, run count, batch law (NaN as null)."""
    return jsonable({"model": law.model, "a": law.a, "k": law.k, "gamma": law.gamma, "b": law.b,
            "e_min": law.e_min, "batch_ref": law.batch_ref, "b_noise": law.b_noise, "ci": law.ci,
            "heldout_error": law.heldout_error, "n_runs": law.n_runs, "target": law.target,
            "n_capped": law.diagnostics.get("n_capped"), "batch_law": law.batch_law,
            "residuals": law.diagnostics.get("residuals")})


def format_report(law: StepLaw) -> str:
    def ci(p):
        lo_hi = law.ci.get(p)
        return f"  [95% CI {lo_hi[0]:.3g}, {lo_hi[1]:.3g}]" if lo_hi else ""

    lines = [f"{law.model}: steps ({law.target}) = a*D^gamma*M^-k + b at batch {law.batch_ref:g}, "
             f"from {law.n_runs} runs ({law.diagnostics.get('n_capped', 0)} capped, "
             f"{law.diagnostics.get('capped_treatment')})"]
    for p in ("a", "k", "gamma", "b") + (("e_min",) if law.e_min else ()):
        lines.append(f"  {p:6s} = {getattr(law, p):.4g}{ci(p)}")
    if law.diagnostics.get("plateau"):
        lines.append(f"  plateau {law.diagnostics['plateau']}")
    k_lo = law.ci.get("k", [law.k])[0]
    lines.append(f"  steps fall with width: {'yes' if k_lo > 0 else 'not significantly' if law.k > 0 else 'no'}"
                 f" (k {'> 0 at 95%' if k_lo > 0 else 'interval includes 0 or below'})")
    h = law.diagnostics.get("heldout", {})
    lines.append(f"  held-out (width {h['width']:g} predicted from smaller widths): median |error| "
                 f"{100 * law.heldout_error:.1f}%" if law.heldout_error is not None
                 else f"  held-out check skipped: {h.get('skipped')}")
    res = law.diagnostics.get("residuals", {})
    lines.append(f"  residuals log(observed/predicted), uncapped runs: rms {res.get('rms_log_residual') or math.nan:.3f}; "
                 f"capped runs predicted below their lower bound: {res.get('capped_below_bound')}"
                 if res.get("rms_log_residual") is not None else "  residuals: no uncapped runs")
    for row in res.get("per_width", []):
        flag = "  <- systematic" if row["systematic"] else ""
        trend = (f"slope vs log D {row['slope_vs_logD']:+.3f} (se {row['se']:.3f})"
                 if row["se"] is not None and np.isfinite(row["se"]) else "slope vs log D n/a")
        lines.append(f"    width {row['width']:g} ({row['n']} runs): mean {row['mean_log_residual']:+.3f}, {trend}{flag}")
    bl = law.batch_law
    if bl:
        c = bl["ci"].get("b_noise")
        lines.append(f"  batch law at width {bl['width']:g}, D {bl['dataset_size']:g}: S_min {bl['s_min']:.4g}, "
                     f"B_noise {bl['b_noise']:.4g}" + (f" [95% CI {c[0]:.3g}, {c[1]:.3g}]" if c else "")
                     + (f"; measured B_simple {bl['b_simple_init']:.3g} at step 0, {bl['b_simple_training']:.3g} "
                        f"pooled over training; diversity bound B_S {bl['b_diversity_init']:.3g} -> "
                        f"{bl['b_diversity_training']:.3g} (bounded by the probe size, "
                        f"{'/'.join(map(str, bl.get('probe_examples', [])))} examples)"
                        if "b_simple_training" in bl else ""))
    return "\n".join(lines)
