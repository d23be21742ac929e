"""Calibrated rates: GEMM efficiency, memory bandwidth, per-kernel overheads, first-touch pages.

Each lookup reads a profile's ``calibration`` section (schema:
:mod:`perfmodel.hardware.calibration`) and returns ``None`` when the profile has no
measurement of that kind; the roofline (:mod:`perfmodel.cost.roofline`) then falls
back to the datasheet figures.  Interpolators are built once per profile (cached).

* **Pure time.**  On a CPU, where dispatch and work are serial, the standalone
  dispatch cost ``overhead_us["dispatch"]`` is subtracted from each measured time
  before a rate is derived: ``pure = max(time - dispatch, PURE_FLOOR * time)``.  On a
  GPU launches overlap the previous kernel and nothing is subtracted.
* **GEMM.**  ``efficiency = 2*m*n*k*batch / (peak[dtype] * pure)``, interpolated as
  ``log(eff)`` over ``(log2 m, log2 n, log2 k)`` (plus ``log2 batch`` for batched
  GEMMs), separately per dtype and operand layout when measured.  On a GPU the
  table stores ``eff / wave_eff(m, n, batch, k)`` (:mod:`perfmodel.cost.waves`,
  split-K included) and a query multiplies the smooth residual by the wave factor
  at the query shape, so tile and wave quantization stay exact.
* **Memory.**  ``log(pure time)`` vs ``log(bytes)``, piecewise linear per curve
  (:class:`perfmodel.cost.interp.Curve1D`); beyond the measured range the
  bandwidth of the nearest end is kept.  An op reads the curve of its kind
  (:data:`MEMORY_CURVE_FOR_KIND`), or the curve its own kernel names
  (``meta["curve"]``: batch norm, max pooling, forward and ``_bwd``).
* **Overhead.**  ``overhead_us[kind]`` (else ``default``) per kernel of an op;
  ``backward_call + optimizer_call`` once per training step.
* **Allocation (CPU).**  An op output of at least ``always_fresh_bytes`` lands on
  freshly mapped pages (glibc serves it with ``mmap``, mallopt(3) ``M_MMAP_THRESHOLD``) and pays
  ``first_touch_s_per_byte`` per byte for the page faults, serially with the
  kernel.  The GEMM, memory and conv points are timed into preallocated outputs,
  so nothing is counted twice.  Pages that sat freed cost ``first_touch_cold_s_per_byte``
  instead in the steps :func:`cold_pages` picks (a virtual machine's free page reporting,
  :mod:`perfmodel.calibrate.allocation`): priced on :func:`cold_profile`, the same profile
  with that rate.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..ops import OpKind
from .alignment import alignment_class, class_factors, offgrid_factor
from .interp import Curve1D, LogInterpolator
from .waves import gemm_wave_efficiency

#: memory curve used for each op kind's traffic (first one measured wins)
MEMORY_CURVE_FOR_KIND = {
    OpKind.COPY: ("copy", "elementwise"),
    OpKind.ELEMENTWISE: ("elementwise", "copy"),
    OpKind.EMBEDDING: ("copy", "elementwise"),
    OpKind.OPTIMIZER: ("elementwise", "copy"),
    OpKind.REDUCTION: ("reduction", "elementwise", "copy"),
    OpKind.LOSS: ("reduction", "elementwise", "copy"),
}
PURE_FLOOR = 0.1      # a measured op is never credited with less than 10% of its time as work


class ProfileCache:
    """``cache(hw)``: ``build(hw)`` made once per calibrated profile, or None without a calibration.

    Least recently used entries beyond ``size`` are dropped; an entry holds its profile,
    so the profile's ``id`` cannot be reused while it is cached.
    """

    def __init__(self, build, size: int = 32):
        self._build, self._size = build, size
        self._entries: OrderedDict[int, tuple] = OrderedDict()

    def __call__(self, hw):
        if not hw.calibration:
            return None
        key = id(hw)
        hit = self._entries.get(key)
        if hit is not None and hit[0] is hw:
            self._entries.move_to_end(key)
            return hit[1]
        built = self._build(hw)
        self._entries[key] = (hw, built)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return built


def dispatch_s(hw) -> float:
    """Standalone per-call cost subtracted from measured points (CPU; 0 on GPU or if unmeasured)."""
    if hw.kind != "cpu" or not hw.calibration:
        return 0.0
    return hw.calibration.get("overhead_us", {}).get("dispatch", 0.0) * 1e-6


def pure_time(hw, t):
    """Measured time minus the standalone dispatch cost (CPU only), floored at ``PURE_FLOOR * t``."""
    t = np.asarray(t, dtype=float)
    d = dispatch_s(hw)
    return np.maximum(t - d, PURE_FLOOR * t)


class _RateTables:
    """The GEMM efficiency interpolators and memory curves of one profile, built on first use."""

    def __init__(self, hw):
        self.hw, self.cal = hw, hw.calibration or {}
        self._gemm = self._memory = None
        self._offgrid: dict = {}

    def gemm(self, dtype, trans_a, trans_b, batched):
        """Interpolator and whether it takes a batch coordinate, for the closest measured group.

        Tried in order: the exact (dtype, layout, batched) group; all layouts of
        the dtype with the same batchedness; every point of the dtype.
        """
        self._group_points()
        for want in ((dtype, trans_a, trans_b, batched), (dtype, None, None, batched), (dtype, None, None, None)):
            if want not in self._gemm:
                pts = [p for key, ps in self._gemm_raw.items()
                       if all(w is None or w == g for w, g in zip(want, key, strict=True)) for p in ps]
                self._gemm[want] = self._build_gemm(pts) if pts else None
            if self._gemm[want] is not None:
                return self._gemm[want]
        return None

    def _group_points(self):
        """``calibration.gemm`` split once into grid, off-grid and hot points per (dtype, layout, batched)."""
        if self._gemm is None:
            self._gemm, self._gemm_raw, self._offgrid_raw, self._hot_raw, self._hot = {}, {}, {}, {}, {}
            for p in self.cal.get("gemm", []):
                key = (p.get("dtype", "fp32"), bool(p.get("trans_a", False)), bool(p.get("trans_b", False)),
                       p.get("batch", 1) > 1)
                raw = self._hot_raw if p.get("hot") else self._offgrid_raw if p.get("offgrid") else self._gemm_raw
                raw.setdefault(key, []).append(p)

    def hot(self, dtype, trans_a, trans_b):
        """(interpolator over (m, n, k), largest m, largest n x k) of the hot points of this layout, or None."""
        self._group_points()
        key = (dtype, trans_a, trans_b)
        if key not in self._hot:
            pts = self._hot_raw.get((*key, False), [])
            self._hot[key] = (self._build_gemm(pts)[0], max(p["m"] for p in pts),
                              max(p["n"] * p["k"] for p in pts)) if pts else None
        return self._hot[key]

    def offgrid_factors(self, dtype, trans_a, trans_b):
        """The off-grid factor per alignment class of this dtype and layout
        (:func:`perfmodel.cost.alignment.class_factors`), None without off-grid points."""
        key = (dtype, trans_a, trans_b)
        if key not in self._offgrid:
            self._group_points()
            pts = self._offgrid_raw.get((dtype, trans_a, trans_b, False), [])
            found = self.gemm(dtype, trans_a, trans_b, False) if pts else None
            if found is None:
                self._offgrid[key] = None
            else:
                m, n, k = (np.array([p[f] for p in pts], dtype=float) for f in ("m", "n", "k"))
                grid = found[0](m, n, k) * self._wave(m, n, k, 1)
                self._offgrid[key] = class_factors(alignment_class(m, n, k), np.log(grid / self._efficiency(pts)))
        return self._offgrid[key]

    def _efficiency(self, pts):
        """``2 m n k batch / (peak x pure time)`` of measured points."""
        m, n, k, b = (np.array([p.get(f, 1) for p in pts], dtype=float) for f in ("m", "n", "k", "batch"))
        t = np.array([p["time_s"] for p in pts], dtype=float)
        return 2 * m * n * k * b / (self.hw.peak_flops(pts[0].get("dtype", "fp32")) * pure_time(self.hw, t))

    def _wave(self, m, n, k, b):
        """The wave factor of shapes (GPU; 1 on a CPU)."""
        if self.hw.kind != "gpu":
            return 1.0
        return gemm_wave_efficiency(self.hw, *(np.asarray(x).astype(np.int64) for x in (m, n, b, k)))

    def _build_gemm(self, pts):
        m, n, k, b = (np.array([p.get(f, 1) for p in pts], dtype=float) for f in ("m", "n", "k", "batch"))
        eff = self._efficiency(pts) / self._wave(m, n, k, b)
        has_batch = bool((b > 1).any())
        coords = np.stack([m, n, k, b] if has_batch else [m, n, k], axis=1)
        return LogInterpolator(coords, eff), has_batch

    def memory(self):
        if self._memory is None:
            by_op: dict[str, list] = {}
            for p in self.cal.get("memory", []):
                by_op.setdefault(p["op"], []).append(p)
            self._memory = {op: Curve1D([p["bytes"] for p in ps], pure_time(self.hw, [p["time_s"] for p in ps]))
                            for op, ps in by_op.items()}
        return self._memory


rate_tables = ProfileCache(_RateTables)


def hot_gemm_efficiency(hw, dtype, m, n, k, trans_b=False, trans_a=False):
    """Efficiency of a GEMM whose operands are in cache (the hot points, interpolated), NaN where the
    shape lies outside their range (m or n x k above the largest measured); None if unmeasured."""
    t = rate_tables(hw)
    found = t.hot(dtype, bool(trans_a), bool(trans_b)) if t is not None else None
    if found is None:
        return None
    interp, m_max, nk_max = found
    m, n, k = (np.asarray(x, dtype=float) for x in (m, n, k))
    eff = np.where((m <= m_max) & (n * k <= nk_max), interp(m, n, k), np.nan)
    return eff if eff.ndim else float(eff)


def gemm_efficiency(hw, dtype, m, n, k, batch=1, trans_b=False, trans_a=False):
    """Achieved fraction of ``peak[dtype]`` for a GEMM (arrays broadcast); None if unmeasured."""
    t = rate_tables(hw)
    if t is None or not t.cal.get("gemm"):
        return None
    found = t.gemm(dtype, bool(trans_a), bool(trans_b), bool(np.any(np.asarray(batch) > 1)))
    if found is None:
        return None
    interp, has_batch = found
    eff = interp(m, n, k, batch) if has_batch else interp(m, n, k)
    factors = t.offgrid_factors(dtype, bool(trans_a), bool(trans_b))
    if factors is not None:
        eff = eff / offgrid_factor(factors, m, n, k)
    if hw.kind == "gpu":
        eff = eff * gemm_wave_efficiency(hw, m, n, batch, k)
    return eff


def bandwidth_Bps(hw, nbytes, kind: str | None = None, curve: str | None = None):
    """Achieved bytes/s moving ``nbytes`` in one kernel of ``kind`` (the measured ``curve`` of that
    very kernel first, when given and calibrated); None if unmeasured."""
    t = rate_tables(hw)
    if t is None:
        return None
    curves = t.memory()
    for op in ((curve,) if curve else ()) + MEMORY_CURVE_FOR_KIND.get(kind, ("copy", "elementwise", "reduction")):
        if op in curves:
            nb = np.maximum(np.asarray(nbytes, dtype=float), 1.0)
            bw = nb / curves[op].time_s(nb)
            return bw if np.ndim(bw) else float(bw)
    return None


def overhead_s(hw, kind):
    """Measured fixed cost of one ``kind`` kernel in a training step (else ``default``); None if unmeasured."""
    if not hw.calibration:
        return None
    ov = hw.calibration.get("overhead_us", {})
    v = ov.get(kind, ov.get("default"))
    return None if v is None else v * 1e-6


def step_calls_s(hw):
    """Fixed seconds per training step for its one backward call and one optimizer call; None if unmeasured."""
    ov = (hw.calibration or {}).get("overhead_us", {})
    calls = [ov[k] for k in ("backward_call", "optimizer_call") if k in ov]
    return sum(calls) * 1e-6 if calls else None


#: seconds a freed block waits before it is reported to the host (Linux ``mm/page_reporting.c``,
#: ``PAGE_REPORTING_DELAY`` = 2 * HZ)
PAGE_REPORTING_DELAY_S = 2.0


def has_cold_rate(hw) -> bool:
    return "first_touch_cold_s_per_byte" in (hw.calibration or {}).get("allocation", {})


def cold_pages(hw, step_s, fresh_per_step):
    """Whether a step of ``step_s`` seconds that faults in ``fresh_per_step`` bytes pays the cold rate
    (broadcast; False without a cold measurement): its freed pages wait a step, so longer than the
    reporting delay, for their next use, and it frees at least as much as the calibration's cold
    buffer, the regime the cold rate was measured in."""
    if not has_cold_rate(hw):
        return np.zeros(np.shape(step_s), bool) if np.ndim(step_s) else False
    alloc = hw.calibration["allocation"]
    out = (np.asarray(step_s) >= PAGE_REPORTING_DELAY_S) & (np.asarray(fresh_per_step) >= alloc["cold_bytes"])
    return out if out.ndim else bool(out)


def _with_cold_rate(hw):
    from dataclasses import replace
    alloc = hw.calibration["allocation"]
    cold = max(alloc["first_touch_cold_s_per_byte"], alloc["first_touch_s_per_byte"])
    return replace(hw, calibration={**hw.calibration, "allocation": {**alloc, "first_touch_s_per_byte": cold}})


#: ``cold_profile(hw)``: ``hw`` with the cold first-touch rate in place of the warm one (made once per profile)
cold_profile = ProfileCache(_with_cold_rate)


def fresh_bytes(hw, out_bytes):
    """Bytes of an output of ``out_bytes`` that land on fresh pages (0 below the threshold); None if unmeasured."""
    alloc = (hw.calibration or {}).get("allocation", {})
    if "first_touch_s_per_byte" not in alloc or "always_fresh_bytes" not in alloc:
        return None
    b = np.asarray(out_bytes, dtype=float)
    out = np.where(b >= alloc["always_fresh_bytes"], b, 0.0)
    return out if out.ndim else float(out)
