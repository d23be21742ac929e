"""Total training time with an interval: the step law's draws × the time-per-step model's error.

A draw of total time for width w is::

    T_j(w) = S_j(w) · t(w) · exp(σ_t · u_j(w)),   u_j(w) = √ρ · g_j + √(1 − ρ) · h_j(w)

* S_j(w): the law's predictive draws of steps (:func:`perfmodel.steps.uncertainty.predictive_draws`),
  joint over widths (one parameter draw and one extrapolation error per j);
* t(w): the predicted time per step of the chosen layout;
* σ_t: the time-per-step model's spread in log units, from a MAPE m as σ_t = m·√(π/2)
  (for a normal error e, E|e| = σ·√(2/π)).  m is the MAPE that ``perfmodel validate
  --record`` stored in the profile (``calibration.provenance.validation.mape``), else the
  default for the profile's source in :data:`DEFAULT_MAPE` (evidence in docs/accuracy.md);
* g_j, h_j(w) ~ N(0, 1): a part of the time error shared by all widths on one profile and a
  part per width, with correlation ρ = :data:`TIME_ERROR_CORRELATION`.

The answer is the median with the 10th and 90th percentiles (80 % interval), and for a
set of widths the probability p_fastest that each has the least total time over the joint
draws (widths that do not fit in memory get 0).
"""
from __future__ import annotations

import math

import numpy as np

# MAPE of time per step per profile source, used when the profile records no validation:
# datasheet: published multi-GPU transformer runs were predicted 32% off (MAPE), DeepBench kernels
#   on the datasheet V100/P100 profiles 46-74% per kernel kind; whole steps mix kernels: 0.35;
# datasheet_in_step (a datasheet profile with a fitted in_step_fraction: A100, H100, H200, B200): the
#   55 published runs the fraction was not fitted on, MAPE 13.6% (per source 5-40%): 0.15;
# csv (DeepBench-imported tables): held-out DeepBench rows 13-37% per kind: 0.25;
# microbenchmark (calibrated on the device): validate --sample 20 on a seed nobody looked at, five
#   models, 11.7-39.5% (mean 24.8%) on a shared VM whose speed drifted after calibration: 0.25
#   (docs/accuracy.md, "Validation").
DEFAULT_MAPE = {"datasheet": 0.35, "datasheet_in_step": 0.15, "csv": 0.25, "microbenchmark": 0.25}
TIME_ERROR_CORRELATION = 0.5
SEED = 12345


def profile_source(hw) -> str:
    """The key of :data:`DEFAULT_MAPE` for ``hw``: its calibration's source, else ``datasheet``
    (``datasheet_in_step`` where the datasheet profile carries a fitted ``in_step_fraction``)."""
    cal = getattr(hw, "calibration", None) or {}
    if cal:
        return str((cal.get("provenance") or {}).get("source") or "datasheet")
    return "datasheet_in_step" if getattr(hw, "in_step_fraction", None) is not None else "datasheet"


def step_time_mape(hw) -> tuple[float, str]:
    """(MAPE of the time-per-step model on ``hw``, where it comes from)."""
    cal = getattr(hw, "calibration", None) or {}
    rec = ((cal.get("provenance") or {}).get("validation") or {}) if cal else {}
    if isinstance(rec.get("mape"), (int, float)) and rec["mape"] > 0:
        return float(rec["mape"]), f"validate --record on {rec.get('date', '?')} ({rec.get('model', '?')})"
    src = profile_source(hw)
    m = DEFAULT_MAPE.get(src, DEFAULT_MAPE["datasheet"])
    return m, f"default for a {src} profile (docs/accuracy.md)"


def sigma_from_mape(mape: float) -> float:
    return float(mape) * math.sqrt(math.pi / 2)


def total_draws(steps_draws: np.ndarray, time_per_step_s, sigma_t: float, seed: int = SEED) -> np.ndarray:
    """[n, W] draws of total seconds from [n, W] step draws and W times per step."""
    steps_draws = np.asarray(steps_draws, float)
    n = steps_draws.shape[0]
    t = np.asarray(time_per_step_s, float)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n,) + (1,) * (steps_draws.ndim - 1))
    h = rng.standard_normal(steps_draws.shape)
    rho = TIME_ERROR_CORRELATION
    u = math.sqrt(rho) * g + math.sqrt(1 - rho) * h
    return steps_draws * t * np.exp(sigma_t * u)


def summarize(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, 10th, 90th percentile) over the draws axis."""
    q = np.percentile(draws, [50, 10, 90], axis=0)
    return q[0], q[1], q[2]


def p_fastest(draws: np.ndarray, valid) -> np.ndarray:
    """Per width, the share of joint draws in which it has the least total time (0 where not valid)."""
    draws = np.where(np.asarray(valid, bool)[None, :], np.asarray(draws, float), np.inf)
    out = np.zeros(draws.shape[1])
    ok = np.isfinite(draws).any(axis=1)
    if ok.any():
        winners = np.argmin(draws[ok], axis=1)
        out += np.bincount(winners, minlength=draws.shape[1]) / ok.sum()
    return out


def width_intervals(law, params, dataset_size, batch, time_per_step_s, valid, hw) -> dict | None:
    """Total-time medians, 80 % intervals and p_fastest for widths with ``params`` (None without draws)."""
    from .steps.uncertainty import predictive_draws
    params = np.asarray(params, float)
    steps = predictive_draws(law, params, dataset_size, batch)
    if steps is None:
        return None
    mape, source = step_time_mape(hw)
    t = np.where(np.asarray(valid, bool), np.asarray(time_per_step_s, float), np.nan)
    d = total_draws(steps, np.nan_to_num(t, nan=1.0), sigma_from_mape(mape))
    med, lo, hi = summarize(d)
    bad = ~np.asarray(valid, bool)
    med, lo, hi = (np.where(bad, np.nan, v) for v in (med, lo, hi))
    return {"total_time_median_s": med, "total_time_interval_80": np.stack([lo, hi], axis=-1),
            "p_fastest": p_fastest(d, valid), "step_time_mape": mape, "step_time_mape_source": source}


def single_interval(law, params, dataset_size, batch, time_per_step_s, hw) -> dict:
    """Keys for one configuration: steps and total-time medians with 80 % intervals, the
    extrapolation factors and, beyond 30×, a ``warning`` line (intervals None without draws)."""
    from .steps.uncertainty import extrapolation, extrapolation_warning, interval
    iv = interval(law, params, dataset_size, batch) if hasattr(law, "draws") else {}
    out = {"extrapolation": extrapolation(law, params, dataset_size) if hasattr(law, "measured_range") else None,
           "steps_median": iv.get("steps"), "steps_interval_80": iv.get("interval_80"),
           "total_time_median_s": None, "total_time_interval_80": None}
    warn = extrapolation_warning(law, params, dataset_size) if hasattr(law, "measured_range") else None
    if warn:
        out["warning"] = warn
    r = width_intervals(law, [params], dataset_size, batch, [time_per_step_s], [True], hw) if iv else None
    if r is None:
        out["intervals"] = "unavailable: the step law has no parameter draws"
        return out
    out.update(total_time_median_s=float(r["total_time_median_s"][0]),
               total_time_interval_80=[float(v) for v in r["total_time_interval_80"][0]],
               step_time_mape=r["step_time_mape"], step_time_mape_source=r["step_time_mape_source"])
    return out


def attach_plan_intervals(plan, law, factor: float, hw):
    """Fill each fitting row's total-time median, 80 % interval and p_fastest, and the plan's
    ``uncertainty`` (time-per-step spread and its source, extrapolation, a warning beyond 30×)."""
    from dataclasses import replace

    from .steps.uncertainty import extrapolation, extrapolation_warning, has_draws
    fit = [i for i, r in enumerate(plan.rows) if r.fits]
    info: dict = {"method": "step-law draws x time per step x exp(sigma_t u); perfmodel/total_interval.py"}
    if not fit:
        info["intervals"] = "no width fits"
        plan.uncertainty = info
        return plan
    rows = [plan.rows[i] for i in fit]
    params = np.array([r.params for r in rows], float)
    update = [{} for _ in rows]
    if getattr(law, "measured_range", None):
        info["extrapolation"] = {**extrapolation(law, params.max(), plan.dataset_size),
                                 "widest_params": float(params.max())}
        warn = extrapolation_warning(law, params.max(), plan.dataset_size)
        if warn:
            info["warning"] = warn
        for u, r in zip(update, rows, strict=True):
            u["extrapolation_params_x"] = extrapolation(law, r.params, plan.dataset_size)["params_x"]
    if has_draws(law):
        batch = np.array([r.batch for r in rows], float) * factor
        times = np.array([r.time_per_step_s for r in rows], float)
        out = width_intervals(law, params, plan.dataset_size, batch, times, np.ones(len(rows), bool), hw)
        for j, u in enumerate(update):
            u.update(total_time_median_s=float(out["total_time_median_s"][j]),
                     total_time_interval_80=[float(v) for v in out["total_time_interval_80"][j]],
                     p_fastest=float(out["p_fastest"][j]))
        info.update(step_time_mape=out["step_time_mape"], step_time_mape_source=out["step_time_mape_source"],
                    most_likely_fastest_width=int(rows[int(np.argmax(out["p_fastest"]))].width))
    else:
        info["intervals"] = "unavailable: the step law has no parameter draws"
    for i, u in zip(fit, update, strict=True):
        plan.rows[i] = replace(plan.rows[i], **u)
    plan.uncertainty = info
    return plan
