"""Interpolation of measured points in log space: the smooth N-d fit and the 1-D curve.

:class:`LogInterpolator` fits ``log(value)`` over ``log2`` coordinates with a
thin-plate-spline radial basis function (J. Duchon, "Splines minimizing
rotation-invariant semi-norms in Sobolev spaces", Constructive Theory of Functions
of Several Variables, LNM 571, 1977; ``scipy.interpolate.RBFInterpolator``) and
bakes it on a regular grid, so that a query is multilinear on that grid.  :class:`Curve1D` is
``log(time)`` piecewise linear in ``log(bytes)``, with constant bandwidth (time proportional to bytes) beyond its
ends.  Both are vectorized: a query takes scalars or arrays and broadcasts.
"""
from __future__ import annotations

import math

import numpy as np

GRID_STEP_LOG2 = 0.5  # baked interpolation grid: one node per factor sqrt(2) ...
GRID_NODES_MAX = 24   # ... but at most this many nodes per axis
RBF_SMOOTHING = 1e-3  # thin-plate smoothing of log values (measured spreads are a few %)


class LogInterpolator:
    """``f(x1, ..., xd) = exp(fit(log2 x))`` through measured points, vectorized.

    Built once: a thin-plate-spline RBF (``scipy.interpolate.RBFInterpolator``,
    degree-1 polynomial, light smoothing) through ``log(values)`` is evaluated on
    a regular grid spanning the points' bounding box in log2 space.  A query is
    multilinear on that grid with coordinates clamped to the box (outside the
    measured range the edge value is kept): O(2^d) gathers per element, so
    10,000-element arrays cost well under a millisecond.  Axes along which all
    points agree are dropped; fewer points than the fit needs fall back to the
    nearest point.  The baked values are clipped to the measured range widened
    by ``margin`` (log units) so the spline cannot run away between points.
    """

    def __init__(self, coords, values, margin: float = 0.5):
        x = np.log2(np.asarray(coords, dtype=float))
        y = np.log(np.asarray(values, dtype=float))
        if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
            raise ValueError("LogInterpolator needs an (n, d) array of coordinates and n values")
        self.ndim = x.shape[1]
        self.axes = [i for i in range(self.ndim) if np.ptp(x[:, i]) > 1e-9]
        self.const = None
        if not self.axes or len(y) == 1:
            self.const = float(np.median(y))
            return
        xs = x[:, self.axes]
        self.lo, self.hi = xs.min(axis=0), xs.max(axis=0)
        nodes = np.clip(np.ceil((self.hi - self.lo) / GRID_STEP_LOG2).astype(int) + 1, 2, GRID_NODES_MAX)
        self.step = (self.hi - self.lo) / (nodes - 1)
        self.shape = tuple(int(v) for v in nodes)
        grid = np.stack(np.meshgrid(*[np.linspace(a, b, n) for a, b, n in zip(self.lo, self.hi, nodes, strict=True)],
                                    indexing="ij"), axis=-1).reshape(-1, len(self.axes))
        self.grid = self._fit(xs, y)(grid).reshape(self.shape)
        self.grid = np.clip(self.grid, y.min() - margin, y.max() + margin)
        self.strides = np.array([int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape))])

    @staticmethod
    def _fit(xs, y):
        from scipy.interpolate import NearestNDInterpolator, RBFInterpolator
        d = xs.shape[1]
        if d == 1 and len(y) < d + 2:  # two points on one axis: the line through them, flat beyond
            order = np.argsort(xs[:, 0])
            return lambda g: np.interp(g[:, 0], xs[order, 0], y[order])
        if len(y) < d + 2:  # too few points for a spline with a linear trend
            return NearestNDInterpolator(xs, y)
        try:
            return RBFInterpolator(xs, y, kernel="thin_plate_spline", degree=1,
                                   smoothing=RBF_SMOOTHING * len(y))
        except (np.linalg.LinAlgError, ValueError):  # degenerate layout (points on a plane)
            return NearestNDInterpolator(xs, y)

    def __call__(self, *coords):
        arrs = np.broadcast_arrays(*[np.asarray(c, dtype=float) for c in coords])
        if self.const is not None:
            out = np.full(arrs[0].shape, math.exp(self.const))
            return out if out.ndim else float(out)
        shape = arrs[0].shape
        frac, base = [], []
        for j, axis in enumerate(self.axes):
            t = (np.log2(arrs[axis].ravel()) - self.lo[j]) / self.step[j]
            t = np.clip(t, 0.0, self.shape[j] - 1)
            i = np.minimum(t.astype(np.int64), self.shape[j] - 2)
            frac.append(t - i)
            base.append(i)
        flat_grid = self.grid.ravel()
        out = 0.0
        for corner in range(1 << len(self.axes)):
            w, idx = 1.0, 0
            for j in range(len(self.axes)):
                bit = (corner >> j) & 1
                w = w * (frac[j] if bit else 1.0 - frac[j])
                idx = idx + (base[j] + bit) * self.strides[j]
            out = out + w * flat_grid[idx]
        res = np.exp(out).reshape(shape)
        return res if res.ndim else float(res)


class Curve1D:
    """log(time) vs log(bytes), piecewise linear; constant bandwidth beyond the ends."""

    def __init__(self, nbytes, times):
        order = np.argsort(nbytes)
        self.x = np.log(np.asarray(nbytes, dtype=float)[order])
        self.y = np.log(np.asarray(times, dtype=float)[order])

    def time_s(self, nbytes):
        lx = np.log(np.maximum(np.asarray(nbytes, dtype=float), 1.0))
        y = np.interp(lx, self.x, self.y)
        y = np.where(lx > self.x[-1], self.y[-1] + (lx - self.x[-1]), y)
        y = np.where(lx < self.x[0], self.y[0] + (lx - self.x[0]), y)
        return np.exp(y)
