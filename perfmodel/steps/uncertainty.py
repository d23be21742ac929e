"""Prediction intervals of a step law: parameter draws, run-to-run noise and extrapolation.

A predictive draw of log steps at (M, D) is::

    log S_j = log S(θ_j; M, D) + σ · z_j + τ · x · t_j,    z_j ~ N(0, 1),  t_j ~ Student-t(3)

* θ_j: the law's bootstrap draws of its parameters (a resample of the runs, refitted);
* σ: the residual standard deviation of log steps in the fit (run-to-run and seed noise),
  sqrt(Σ r² / (n − p)) over uncapped runs;
* x = max(0, ln(M / M_max)) + max(0, ln(D / D_max)): how far (in e-folds) the point lies
  beyond the largest measured parameter count and dataset size; z_j is drawn per point
  (run-to-run noise), t_j once per draw for all points (a law that extrapolates badly does
  so at every width), so that comparisons between widths see joint draws;
* τ: extrapolation error per e-fold, estimated by leave-the-widest-width(s)-out inside the
  fit: τ² = Σ e_i² / Σ x_i², with e_i the held-out runs' log errors and x_i their distance
  beyond the widths that were kept (σ is not subtracted: with one or two folds the
  estimate is too coarse to split, and a t with 3 degrees of freedom carries τ for the
  same reason: it rests on one to three held-out widths).

Quantiles of the draws give the median and the 80 % and 95 % intervals.  The z_j come
from ``numpy.random.default_rng(seed)`` with the seed stored in the law file, so the
same law always gives the same interval.
"""
from __future__ import annotations

import math

import numpy as np

from .law import law_steps

N_PREDICTIVE = 2000       # predictive draws per point (θ draws repeated, fresh z)
TAU_DOF = 3               # Student-t degrees of freedom of the extrapolation term (τ rests on 1-3 folds)
WARN_EXTRAPOLATION = 30.0  # beyond this factor past the measured M or D, say so


def extrapolation(law, M, D) -> dict[str, float]:
    """× beyond the largest measured parameter count and dataset size (1 inside the range)."""
    rng = law.measured_range or {}
    out = {}
    for key, v, name in (("M", M, "params_x"), ("D", D, "dataset_x")):
        hi = (rng.get(key) or [None, None])[1]
        out[name] = float(max(1.0, float(np.max(v)) / hi)) if hi else math.nan
    return out


def extrapolation_warning(law, M, D) -> str | None:
    """One ``warning:`` line when (M, D) lies more than 30× beyond the measured range."""
    x = extrapolation(law, M, D)
    far = [f"{x[k]:.0f}× the largest measured {what}" for k, what in
           (("params_x", "parameter count"), ("dataset_x", "dataset size")) if x[k] > WARN_EXTRAPOLATION]
    return ("warning: the step law extrapolates to " + " and ".join(far) +
            "; treat its steps and interval as a guess") if far else None


def has_draws(law) -> bool:
    return bool(law.draws) and len(law.draws.get("k", ())) >= 2


def log_distance(law, M, D):
    """x = max(0, ln M/M_max) + max(0, ln D/D_max), broadcast over M and D."""
    rng = law.measured_range or {}
    M, D = np.asarray(M, float), np.asarray(D, float)
    x = np.zeros(np.broadcast(M, D).shape)
    for key, v in (("M", M), ("D", D)):
        hi = (rng.get(key) or [None, None])[1]
        if hi:
            x = x + np.maximum(0.0, np.log(v / hi))
    return x


def predictive_draws(law, M, D, B=None, n: int = N_PREDICTIVE) -> np.ndarray | None:
    """[n, *shape] predictive draws of steps at (M, D, B) (broadcast); None without draws."""
    if not has_draws(law):
        return None
    M, D = np.asarray(M, float), np.asarray(D, float)
    shape = np.broadcast(M, D, np.asarray(1.0 if B is None else B, float)).shape
    fields = {f: np.asarray(v, float) for f, v in law.draws.items()}
    n_theta = len(fields["k"])
    idx = np.arange(n) % n_theta
    expand = (slice(None),) + (None,) * len(shape)
    theta = {f: v[idx][expand] for f, v in fields.items()}
    s = law_steps(theta, M, D, law.batch_ref, law.tokens_per_example)
    s = s * law.batch_factor(B)
    rng = np.random.default_rng(law.interval_seed)
    z = rng.standard_normal((n,) + shape)
    t = rng.standard_t(TAU_DOF, (n,) + (1,) * len(shape))  # one extrapolation error per draw, shared by all points
    noise = (law.sigma_log or 0.0) * z + (law.tau_extrap or 0.0) * log_distance(law, M, D) * t
    return np.broadcast_to(s, (n,) + shape) * np.exp(noise)


def interval(law, M, D, B=None) -> dict:
    """Median steps with 80 % and 95 % intervals and the extrapolation distance at (M, D, B).

    Without stored draws (a law file from before intervals) the intervals are None and
    ``intervals`` says they are unavailable.
    """
    point = float(np.asarray(law.steps(M, D, B)))
    out = {"steps": point, "interval_80": None, "interval_95": None,
           "extrapolation": extrapolation(law, M, D)}
    draws = predictive_draws(law, M, D, B)
    if draws is None:
        out["intervals"] = "unavailable: the law file has no parameter draws (refit it with perfmodel steps fit)"
        return out
    q = np.percentile(draws, [2.5, 10, 50, 90, 97.5])
    out.update(steps=float(q[2]), interval_80=[float(q[1]), float(q[3])], interval_95=[float(q[0]), float(q[4])],
               point_estimate=point)
    return out


def tau_from_heldout(log_errors, distances, sigma: float) -> float:
    """τ = sqrt(Σ e² / Σ x²) from held-out log errors and their e-fold distances (σ unused, kept for callers)."""
    e, x = np.asarray(log_errors, float), np.asarray(distances, float)
    ok = np.isfinite(e) & (x > 0)
    if not ok.any():
        return 0.0
    return float(math.sqrt(float(np.sum(e[ok] ** 2)) / float(np.sum(x[ok] ** 2))))
