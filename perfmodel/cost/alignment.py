"""GEMM efficiency off the power-of-two grid: a measured factor per alignment class.

A calibration's GEMM grid has dimensions that are powers of two; the interpolation between them
(:class:`perfmodel.cost.interp.LogInterpolator`) describes aligned shapes.  A BLAS kernel on a
shape whose dimensions are odd, or multiples of only 2 or 4, runs its edge code, packs partial
panels and loads unaligned vectors, so it is slower than its neighbours on the grid (the size of
the effect on a CPU: ``docs/accuracy.md``, "Calibration").  The shape's *alignment* is::

    align(d) = 16                        if d is a power of two (the grid's own dimensions)
             = min(lowbit(d), 16)        otherwise (lowbit: the largest power of two dividing d)
    align(m, n, k) = min(align(m), align(n), align(k))     -> class log2(align) in 0..4

The calibration times ``gemm_offgrid`` shapes of each class 1, 2, 4, 8
(:meth:`perfmodel.calibrate.plan.CalibrationPlan.gemm_offgrid_shapes`); each point's log ratio
``log(eff_grid / eff_measured)`` (``eff_grid``: the interpolation through the grid points at its
shape) is its loss, and a class's factor is ``exp(median loss)`` over its points.  Class 4 (16) is
the grid itself, factor 1; a class with no point takes the factor of the nearest class that has
one (ties: the less aligned).  A query's efficiency is ``eff_grid / factor[class]``.
"""
from __future__ import annotations

import numpy as np

ALIGN_CAP = 16
CLASSES = 5   # alignments 1, 2, 4, 8, 16


def alignment_class(m, n, k):
    """``log2(min(align(m), align(n), align(k)))`` (module docstring), vectorized; int array."""
    out = None
    for d in (m, n, k):
        d = np.maximum(np.rint(np.asarray(d, dtype=float)), 1).astype(np.int64)
        low = d & -d
        a = np.where(low == d, ALIGN_CAP, np.minimum(low, ALIGN_CAP))
        out = a if out is None else np.minimum(out, a)
    return np.log2(out).astype(np.int64)


def class_factors(classes, losses) -> np.ndarray:
    """``exp(median loss)`` per class (length ``CLASSES``), filled as the module docstring says."""
    classes, losses = np.asarray(classes, dtype=np.int64), np.asarray(losses, dtype=float)
    known = {CLASSES - 1: 0.0}
    for c in range(CLASSES - 1):
        if np.any(classes == c):
            known[c] = float(np.median(losses[classes == c]))
    table = np.zeros(CLASSES)
    for c in range(CLASSES):
        nearest = min(known, key=lambda j: (abs(j - c), j))
        table[c] = known[nearest]
    return np.exp(table)


def offgrid_factor(table: np.ndarray, m, n, k):
    """The factor of each query shape's class (``table`` from :func:`class_factors`)."""
    return table[alignment_class(m, n, k)]
