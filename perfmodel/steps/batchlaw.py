"""The batch law (McCandlish et al. 2018, eq. 2.11): S(B) = S_min · (1 + B_noise / B).

Fitted to the (width, dataset size) measured at the most batch sizes (three or more,
uncapped).  Following the paper, S counts steps to reach a common loss: the largest of
the runs' minimum validation losses times (1 + tol), read from the stored validation
curves (``val_curve`` column; without it, the target column).  Fit: least squares on
log S with a soft-L1 loss; 95 % intervals from a bootstrap over the runs.
"""
from __future__ import annotations

import json
import math

import numpy as np
from scipy.optimize import least_squares

from .forms import F_SCALE


def _steps_to_loss(curve_json: str, target_loss: float) -> float:
    for step, loss in json.loads(curve_json):
        if loss <= target_loss:
            return float(step)
    return math.nan


def fit_batch_law(runs, target="steps_to_min", tol=0.01, n_boot=200, seed=0) -> dict | None:
    """S(B) = S_min (1 + B_noise/B) for the (width, D) with the most batch sizes (≥ 3); else None."""
    ok = ~runs["capped"]
    best_key, best_n = None, 2
    for w, D in sorted(set(zip(runs["width"][ok], runs["dataset_size"][ok], strict=True))):
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
           "runs": [{"batch": float(b), "steps": float(s)} for b, s in sorted(zip(B, S, strict=True))]}
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
    for text, until in zip(stats_json, until_steps, strict=True):
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
