"""Size bounds: a configuration is costed only when its counts fit the integers that count them.

The op graph counts parameters, FLOPs and bytes in integers: exact for Python ints, but the
int64 arrays of sweeps and the layout search wrap past 2**63 - 1 without a warning (a width of
4e9 gave an MLP -7.3e21 parameters and a plan a negative total time).  So a configuration is
refused, with one line naming the width and the bound, when

    parameters                                > MAX_PARAMS = 1e15
    FLOPs or bytes of one op x its repeats    > MAX_COUNT  = 2**62 (about 4.6e18; half of
                                                int64's range, a margin for the sums formed later)
    activation bytes kept for backward        > MAX_COUNT

Every count grows with the width and with the batch and sequence knobs, so one exact build
(Python ints) at the largest width and the largest value of each array knob bounds a whole grid.
"""
from __future__ import annotations

import numpy as np

from ..errors import PerfmodelError

MAX_PARAMS = 10**15
MAX_COUNT = 2**62


def check_width(width) -> None:
    """Widths must be positive integers, at most :data:`MAX_PARAMS` (past int64: refused too)."""
    w = np.asarray(width)
    if w.dtype == object and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in w.ravel()):
        raise PerfmodelError(f"width {max(w.ravel())} is too large: widths above {MAX_PARAMS:.0e} are not allowed")
    if w.dtype.kind not in "iu" or (w <= 0).any():
        bad = w.ravel()[0] if w.dtype.kind not in "iu" else w[w <= 0].ravel()[0]
        bad = bad.item() if hasattr(bad, "item") else bad
        raise PerfmodelError(f"width {bad!r} is not allowed; width must be a positive integer")


def as_int64(values, what: str = "width") -> np.ndarray:
    """``values`` as an int64 array; one past int64's range is refused by name (NumPy raises OverflowError)."""
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        big = max(int(v) for v in np.ravel(np.asarray(values, dtype=object)))
        raise PerfmodelError(f"{what} {big} is too large: at most {MAX_PARAMS:.0e} is allowed") from None


def _top(v):
    """The largest entry of an array knob as a Python scalar; other values as they are."""
    if isinstance(v, np.ndarray):
        return v.max().item() if v.size else v
    return v.item() if isinstance(v, np.generic) else v


def check_size(spec, width, dtype: str, knobs: dict) -> None:
    """Raise :class:`PerfmodelError` when ``spec`` at the largest of ``width`` (with the largest of each
    array knob in the resolved ``knobs``) exceeds the bounds of the module docstring."""
    check_width(width)
    top = max(int(x) for x in np.ravel(np.asarray(width, dtype=object)))
    scalar = {k: _top(v) for k, v in knobs.items()}
    where = f"{spec.name} at width {top}"
    shown = [f"{k}={scalar[k]}" for k in ("batch", "seq_len") if isinstance(scalar.get(k), int)]
    at = f"{where} ({', '.join(shown)})" if shown else where   # counts per step grow with these too
    if top > MAX_PARAMS:
        raise PerfmodelError(f"{where} is too large: widths above {MAX_PARAMS:.0e} are not allowed")
    try:
        key = (spec.name, top, dtype, tuple(sorted(scalar.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _PASSED:
        return
    _check_build(spec, top, dtype, scalar, where, at)
    if key is not None:
        if len(_PASSED) > 4096:
            _PASSED.clear()
        _PASSED.add(key)


_PASSED: set = set()   # configurations already checked (a sweep checks per profile and per chunk)


def _check_build(spec, top, dtype, scalar, where, at) -> None:
    try:
        graph = spec.build(top, dtype=dtype, **scalar)
        params = int(graph.params)
        if params > MAX_PARAMS:
            raise PerfmodelError(f"{where} is too large: {params:.3g} parameters, more than the {MAX_PARAMS:.0e} "
                                 "allowed; use a smaller width")
        for op in graph.step_ops("sgd"):
            for what, n in (("FLOPs", op.flops), ("bytes", op.bytes)):
                n = int(n) * int(op.repeat)
                if n > MAX_COUNT:
                    raise PerfmodelError(f"{at} is too large: op {op.path!r} counts {n:.3g} {what} per step, "
                                         f"more than the 2**62 = {MAX_COUNT:.2g} allowed per op (int64 counts "
                                         "would wrap); use a smaller width, batch or sequence length")
        act = int(graph.activation_bytes())
    except OverflowError:
        raise PerfmodelError(f"{at} is too large: its counts overflow 64-bit integers; use a smaller width, "
                             "batch or sequence length") from None
    if act > MAX_COUNT:
        raise PerfmodelError(f"{at} is too large: {act:.3g} activation bytes, more than the {MAX_COUNT:.2g} "
                             "allowed; use a smaller width, batch or sequence length")


def countable_batches(spec, widths, batches, dtype: str, knobs: dict) -> list[int]:
    """The sorted ``batches`` (micro-batches of a layout search) at which ``spec`` at the largest of
    ``widths`` passes :func:`check_size`; larger ones are left out (their counts would wrap, and their
    activations could not fit any device).  Raises :func:`check_size`'s error when none passes."""
    batches = sorted(int(b) for b in batches)
    lo, hi = 0, len(batches)          # batches[:lo] pass, batches[hi:] fail (counts grow with the batch)
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            check_size(spec, widths, dtype, {**knobs, "batch": batches[mid]})
            lo = mid + 1
        except PerfmodelError:
            if mid == 0:
                raise
            hi = mid
    return batches[:lo]
