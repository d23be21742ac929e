"""Trends of a diagnostic with width, as numbers with intervals.

Two fits of ``y`` against width ``w`` over all (width, seed) rows:

* power law ``log y = a + s log w`` (:func:`loglog_slope`): ``s`` is the
  exponent, so ``s ~ 1`` means linear growth, ``s ~ 0.5`` square-root growth,
  ``s < 0`` shrinkage.
* logarithmic law ``y = a + b ln w`` (:func:`semilog_slope`): ``b`` is the
  change of ``y`` per e-fold of width (``b ln 2`` per doubling).

(:func:`mean_interval` gives a mean with its t-interval, for quantities such
as the angle that should stay put.)

Each returns the ordinary least-squares slope with its two-sided ``level``
confidence interval ``slope +- t_{n-2} * stderr`` (Student t with n-2 degrees
of freedom).  ``loglog_slope(..., groups=seeds)`` is the paired version: one
intercept per group, a common slope, ``n - groups - 1`` degrees of freedom.
Numpy and scipy only: no torch at import time.
"""
from __future__ import annotations

import math

import numpy as np

DEFAULT_LEVEL = 0.95


def _fit(x, y, level: float, groups=None) -> dict:
    from scipy import stats
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    nan = float("nan")
    out = {"slope": nan, "lo": nan, "hi": nan, "intercept": nan, "r2": nan, "n": n}
    if groups is not None:
        g = np.asarray(groups, dtype=object)[ok]
        keys = list(dict.fromkeys(g.tolist()))
        xc, yc = x.copy(), y.copy()
        for k in keys:  # within-group (fixed-effects) fit: remove each group's mean
            m = g == k
            xc[m] -= x[m].mean()
            yc[m] -= y[m].mean()
        sxx, dof = float(xc @ xc), n - len(keys) - 1
        out["groups"] = len(keys)
        if sxx == 0 or dof < 0:
            return out
        slope = float(xc @ yc) / sxx
        resid = yc - slope * xc
        syy = float(yc @ yc)
        out.update(slope=slope, intercept=float(y.mean() - slope * x.mean()),
                   r2=1 - float(resid @ resid) / syy if syy > 0 else 1.0)
        if dof > 0:
            half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(float(resid @ resid) / dof / sxx)
            out.update(lo=slope - half, hi=slope + half)
        return out
    if n < 2 or np.ptp(x) == 0:
        return out
    fit = stats.linregress(x, y)
    out.update(slope=float(fit.slope), intercept=float(fit.intercept), r2=float(fit.rvalue ** 2))
    if n > 2:
        half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * float(fit.stderr)
        out.update(lo=out["slope"] - half, hi=out["slope"] + half)
    return out


def loglog_slope(width, y, level: float = DEFAULT_LEVEL, groups=None) -> dict:
    """Exponent ``s`` of ``y ~ width^s`` with its ``level`` interval.

    Rows with ``y <= 0`` or non-finite values are dropped (``n`` counts the rest);
    fit on ``|y|`` yourself when the sign is known and constant.  ``groups``
    (e.g. the seed of each row) makes it a paired fit: one intercept per group,
    a common slope, t-interval with ``n - groups - 1`` degrees of freedom.
    """
    w, v = np.asarray(width, float), np.asarray(y, float)
    ok = (w > 0) & (v > 0)
    g = None if groups is None else np.asarray(groups, dtype=object)[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        return _fit(np.log(w[ok]), np.log(v[ok]), level, g)


def semilog_slope(width, y, level: float = DEFAULT_LEVEL) -> dict:
    """Slope ``b`` of ``y = a + b ln(width)`` with its ``level`` interval."""
    w, v = np.asarray(width, float), np.asarray(y, float)
    ok = w > 0
    return _fit(np.log(w[ok]), v[ok], level)


def verdict(fit: dict, target: float | None = None) -> str:
    """Words for a log-log fit: ``grows``/``shrinks``/``flat`` (interval vs 0),
    plus ``consistent with exponent <target>`` when the interval covers it."""
    lo, hi = fit["lo"], fit["hi"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undetermined"
    word = "grows" if lo > 0 else "shrinks" if hi < 0 else "flat"
    if target is not None:
        tol = 1e-9 * max(1.0, abs(target))
        word += (f", consistent with exponent {target:g}" if lo - tol <= target <= hi + tol
                 else f", exponent differs from {target:g}")
    return word


def mean_interval(values, level: float = DEFAULT_LEVEL) -> dict:
    """Mean of the finite ``values`` with its two-sided t-interval: ``{mean, lo, hi, n}``."""
    from scipy import stats
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    nan = float("nan")
    out = {"mean": float(v.mean()) if v.size else nan, "lo": nan, "hi": nan, "n": int(v.size)}
    if v.size > 1:
        half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
        out.update(lo=out["mean"] - half, hi=out["mean"] + half)
    return out


def width_trends(rows: list[dict], columns, level: float = DEFAULT_LEVEL, by=None,
                 x: str = "width", paired: str | None = None) -> dict:
    """``{column: {"loglog": fit, "semilog": fit[, "loglog_paired": fit]}}`` over ``rows``.

    ``paired`` names a column (e.g. ``"seed"``) whose rows share data or
    initialization across widths; it adds the within-group log-log fit
    (:func:`loglog_slope` with ``groups``), which removes seed-to-seed offsets.

    Fits are against ``rows[i][x]`` (width by default; ``x="depth"`` for depth
    sweeps); each fit carries ``level`` and the log-log one a ``verdict``.
    ``by`` (e.g. ``"depth"``) fits each value of that column separately and keys
    the result ``"<column>@<by>=<value>"``; rows where a column is missing or not
    finite are skipped, and a column with no finite value gets no entry.
    """
    groups = {None: rows} if by is None else {}
    if by is not None:
        for r in rows:
            groups.setdefault(r.get(by), []).append(r)
    out = {}
    for key, grp in groups.items():
        for col in columns:
            pts = [(r[x], r[col], r.get(paired)) for r in grp
                   if isinstance(r.get(col), (int, float)) and math.isfinite(r[col])]
            if not pts:
                continue
            xs, ys, gs = zip(*pts, strict=True)
            ll = loglog_slope(xs, ys, level)
            name = col if key is None else f"{col}@{by}={key}"
            out[name] = {"loglog": {**ll, "level": level, "verdict": verdict(ll)},
                         "semilog": {**semilog_slope(xs, ys, level), "level": level}}
            if paired is not None:
                lp = loglog_slope(xs, ys, level, groups=gs)
                out[name]["loglog_paired"] = {**lp, "level": level, "verdict": verdict(lp)}
    return out
