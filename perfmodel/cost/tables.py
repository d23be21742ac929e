"""Calibrated tables inside a profile's ``calibration`` section.

The profile stores **raw measured points** (written by ``perfmodel calibrate``
or imported from DeepBench); this module validates them and builds the
interpolators the roofline reads, once per profile (cached).  Every lookup
returns ``None`` when the profile has no measurement for that kind, and the
roofline falls back to datasheet efficiencies.

Format (every section optional)::

    provenance   {device, kind, date, command, torch, source, ...}
    gemm         [{dtype, m, n, k, batch, trans_a, trans_b, time_s, spread?}]
    memory       [{op: copy|elementwise|reduction|batchnorm[_bwd]|maxpool[_bwd], bytes, time_s, spread?}]
    overhead_us  {default, dispatch, <op kind>, backward_call?, optimizer_call?: microseconds}
    allocation   {first_touch_s_per_byte, always_fresh_bytes?, ...}  (CPU)
    rnn          [{dtype, cell, hidden, batch, steps, input, fwd_s, bwd_s?}]
    conv         [{dtype, n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w,
                   fwd_s, bwd_data_s?, bwd_weight_s?}]
    collectives  {...}  (owned by ``calibrate.collectives``; only checked to be an object)

Conventions
-----------
* ``overhead_us[kind]`` is the fixed cost of one kernel of that kind *inside a
  training step* (forward call plus its autograd backward), in units of the op
  IR's kernels; the roofline adds it per kernel.  ``overhead_us["dispatch"]``
  is the cost of one tiny op called on its own, the way the GEMM, memory and
  conv points were timed.  On CPU, where dispatch and work are serial, it is
  subtracted from each measured time before the work rate is derived
  (``pure = max(time - dispatch, PURE_FLOOR * time)``); on GPU launches overlap
  the previous kernel and nothing is subtracted.  ``backward_call`` and
  ``optimizer_call`` are fixed costs per *call*: one ``loss.backward()`` and
  one ``optimizer.step()`` + ``zero_grad()`` per training step
  (:func:`step_calls_s`; the roofline books them on the optimizer op).
* GEMM: efficiency = FLOPs / (peak[dtype] * pure time), interpolated as
  ``log(eff)`` over ``(log2 m, log2 n, log2 k)`` (plus ``log2 batch`` for
  batched GEMMs), separately per dtype and operand layout when measured.  On
  GPU the table stores ``eff / wave_eff(m, n, batch, k)`` (``cost.waves``,
  split-K included) and a query multiplies the smooth residual by the wave
  factor at the query shape, so tile and wave quantization stay exact.
* Memory: ``log(pure time)`` vs ``log(bytes)``, piecewise linear per op; beyond
  the measured range the bandwidth of the nearest end is kept.  Batch norm and
  max pooling have curves of their own (``LAYER_CURVES``, forward and
  ``_bwd``), in the op IR's bytes of those ops: an op naming one in
  ``meta["curve"]`` reads it instead of the generic reduction curve.
* RNN (fused ``nn.LSTM``/``nn.GRU`` layer): layer time is
  ``F + input + r * recurrent``: ``input`` is the input GEMM over all steps
  ``[steps*batch x input] @ [input x gates*hidden]`` and its gradients, costed
  from the GEMM tables like any GEMM (so a first layer whose input is much
  wider than its hidden size -- DS2's 1312 conv features into 64 hidden -- is
  not scaled by a ratio measured at input = hidden); ``recurrent`` is the rest
  of ``ops.rnn_components`` (per-step GEMMs and cell kernels, linear in
  steps), ``r`` the measured ratio to it and ``F`` the measured per-call cost
  (weight re-layout, workspaces), both interpolated over
  ``(log2 hidden, log2 batch)``.  Where the GEMM tables already account for
  more than ``1 - RNN_MIN_RECURRENT_SHARE`` of a measured point, the recurrent
  part is kept at that share.  ``F`` and ``r`` come from points of one
  shape at two sequence lengths (a straight-line fit of time vs steps); a
  single length gives ``F = 0``.  Phase ``fwd`` uses ``fwd_s``; ``bwd_s`` (data
  + weight gradients together) is split between ``bwd_data`` and
  ``bwd_weight`` in proportion to their component times (both get the same
  ``r``, and ``F`` is shared in that proportion).
* Allocation (CPU): an op output of at least ``always_fresh_bytes`` lands on
  freshly mapped pages (glibc serves it with ``mmap``) and pays
  ``first_touch_s_per_byte`` per byte for the page faults, serially with the
  kernel.  (Smaller outputs that glibc happens to serve from fresh pages are
  not modelled, see ``calibrate.allocation``.)  The GEMM/memory/conv points
  are timed into preallocated outputs, so nothing is counted twice.
* Conv2d: per phase, the ratio of the measured (pure) time to the analytic
  compute time ``roofline.conv_compute_s`` -- implicit GEMM from the GEMM table
  (or the datasheet), on GPU the faster of that and Winograd -- interpolated
  as ``log(ratio)`` over the implicit-GEMM shape ``(M = n*p*q, N = k,
  K = c*r*s)`` within the conv's filter class (filter size and stride: the
  library picks its algorithm by them), over all points for a class never
  measured; an unmeasured backward phase uses the forward ratios.  A conv
  whose geometry (channels, height, filter, stride, padding) was measured at
  other batches or widths takes its own ratios (piecewise linear in log M,
  the end values beyond): more images or frames add output rows to the same
  kernel, whereas the interpolator, clamped to the measured box, would borrow
  a different conv's.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..errors import ProfileError
from ..ops import RNN_CELLS, Op, OpKind, conv_out_hw
from .waves import gemm_wave_efficiency

SECTIONS = ("provenance", "gemm", "memory", "overhead_us", "allocation", "rnn", "conv", "collectives")
MEMORY_OPS = ("copy", "elementwise", "reduction")
#: kernels timed as curves of their own (``calibrate.layers``): an op whose ``meta["curve"]`` names
#: one reads it in the forward phase and ``<name>_bwd`` in its backward
LAYER_CURVES = ("batchnorm", "maxpool")
CURVE_OPS = MEMORY_OPS + LAYER_CURVES + tuple(f"{c}_bwd" for c in LAYER_CURVES)
#: memory curve used for each op kind's traffic (first one measured wins)
MEMORY_CURVE_FOR_KIND = {
    OpKind.COPY: ("copy", "elementwise"),
    OpKind.ELEMENTWISE: ("elementwise", "copy"),
    OpKind.EMBEDDING: ("copy", "elementwise"),
    OpKind.OPTIMIZER: ("elementwise", "copy"),
    OpKind.REDUCTION: ("reduction", "elementwise", "copy"),
    OpKind.LOSS: ("reduction", "elementwise", "copy"),
}
DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
PURE_FLOOR = 0.1      # a measured op is never credited with less than 10% of its time as work
GRID_STEP_LOG2 = 0.5  # baked interpolation grid: one node per factor sqrt(2) ...
GRID_NODES_MAX = 24   # ... but at most this many nodes per axis
RBF_SMOOTHING = 1e-3  # thin-plate smoothing of log values (measured spreads are a few %)

_GEMM_INT = ("m", "n", "k")
_CONV_INT = ("n", "c", "h", "w", "k", "r", "s", "stride_h", "stride_w")
_CONV_NONNEG = ("pad_h", "pad_w")
_RNN_INT = ("hidden", "batch", "steps", "input")
#: cuDNN's input modes: CUDNN_LINEAR_INPUT (an input GEMM) or CUDNN_SKIP_INPUT (none; DeepBench's rnn_bench)
RNN_INPUT_MODES = ("linear", "skip")
#: smallest share of a measured RNN point's per-step time attributed to the recurrent part
RNN_MIN_RECURRENT_SHARE = 0.1


# --------------------------------------------------------------------------
# Validation: one-line ProfileError naming the file and the key
# --------------------------------------------------------------------------
def _fail(where, key, msg):
    raise ProfileError(f"{where}: key 'calibration.{key}' {msg}")


def _pos_int(where, key, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        _fail(where, key, f"must be an integer >= {minimum}, got {v!r}")


def _pos_num(where, key, v, allow_zero=False):
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if not ok or v < 0 or (v == 0 and not allow_zero):
        _fail(where, key, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {v!r}")


def _points(where, cal, section, check):
    pts = cal[section]
    if not isinstance(pts, list):
        _fail(where, section, "must be a list of objects")
    for i, p in enumerate(pts):
        key = f"{section}[{i}]"
        if not isinstance(p, dict):
            _fail(where, key, "must be an object")
        check(where, key, p)


def _need(where, key, p, names):
    for n in names:
        if n not in p:
            _fail(where, f"{key}.{n}", "is missing")


def _check_dtype(where, key, p):
    if p.get("dtype", "fp32") not in DTYPES:
        _fail(where, f"{key}.dtype", f"must be one of {', '.join(DTYPES)}, got {p['dtype']!r}")


def _check_gemm(where, key, p):
    _need(where, key, p, ("dtype", *_GEMM_INT, "time_s"))
    _check_dtype(where, key, p)
    for n in _GEMM_INT:
        _pos_int(where, f"{key}.{n}", p[n])
    _pos_int(where, f"{key}.batch", p.get("batch", 1))
    for n in ("trans_a", "trans_b"):
        if not isinstance(p.get(n, False), bool):
            _fail(where, f"{key}.{n}", f"must be true or false, got {p[n]!r}")
    _pos_num(where, f"{key}.time_s", p["time_s"])
    if "spread" in p:
        _pos_num(where, f"{key}.spread", p["spread"], allow_zero=True)


def _check_memory(where, key, p):
    _need(where, key, p, ("op", "bytes", "time_s"))
    if p["op"] not in CURVE_OPS:
        _fail(where, f"{key}.op", f"must be one of {', '.join(CURVE_OPS)}, got {p['op']!r}")
    _pos_int(where, f"{key}.bytes", p["bytes"])
    _pos_num(where, f"{key}.time_s", p["time_s"])
    if "spread" in p:
        _pos_num(where, f"{key}.spread", p["spread"], allow_zero=True)


def _check_rnn(where, key, p):
    _need(where, key, p, ("dtype", "cell", *_RNN_INT, "fwd_s"))
    _check_dtype(where, key, p)
    if p["cell"] not in RNN_CELLS:
        _fail(where, f"{key}.cell", f"must be one of {', '.join(RNN_CELLS)}, got {p['cell']!r}")
    for n in _RNN_INT:
        _pos_int(where, f"{key}.{n}", p[n])
    if p.get("input_mode", "linear") not in RNN_INPUT_MODES:
        _fail(where, f"{key}.input_mode", f"must be one of {', '.join(RNN_INPUT_MODES)}, got {p['input_mode']!r}")
    _pos_num(where, f"{key}.fwd_s", p["fwd_s"])
    for n in ("bwd_s", "spread"):
        if n in p:
            _pos_num(where, f"{key}.{n}", p[n], allow_zero=(n == "spread"))


def _check_conv(where, key, p):
    _need(where, key, p, ("dtype", *_CONV_INT, *_CONV_NONNEG, "fwd_s"))
    _check_dtype(where, key, p)
    for n in _CONV_INT:
        _pos_int(where, f"{key}.{n}", p[n])
    for n in _CONV_NONNEG:
        _pos_int(where, f"{key}.{n}", p[n], minimum=0)
    p_out, q_out = conv_out_hw(p)
    if p_out < 1 or q_out < 1:
        _fail(where, key, f"has an empty output ({p_out} x {q_out})")
    _pos_num(where, f"{key}.fwd_s", p["fwd_s"])
    for n in ("bwd_data_s", "bwd_weight_s", "spread"):
        if n in p:
            _pos_num(where, f"{key}.{n}", p[n], allow_zero=(n == "spread"))


def validate_calibration(cal, where: str) -> None:
    """Reject a malformed ``calibration`` section with one line naming ``where`` and the key."""
    if not isinstance(cal, dict):
        raise ProfileError(f"{where}: key 'calibration' must be an object")
    for k in cal:
        if k not in SECTIONS:
            raise ProfileError(f"{where}: unknown key 'calibration.{k}'; allowed: {', '.join(SECTIONS)}")
    for k in ("provenance", "overhead_us", "allocation", "collectives"):
        if k in cal and not isinstance(cal[k], dict):
            _fail(where, k, "must be an object")
    prov = cal.get("provenance", {})
    if "kind" in prov and prov["kind"] not in ("cpu", "gpu"):
        _fail(where, "provenance.kind", f"must be 'cpu' or 'gpu', got {prov['kind']!r}")
    for k, v in cal.get("overhead_us", {}).items():
        _pos_num(where, f"overhead_us.{k}", v, allow_zero=True)
    alloc = cal.get("allocation", {})
    if "first_touch_s_per_byte" in alloc:
        _pos_num(where, "allocation.first_touch_s_per_byte", alloc["first_touch_s_per_byte"], allow_zero=True)
    if "always_fresh_bytes" in alloc:
        _pos_int(where, "allocation.always_fresh_bytes", alloc["always_fresh_bytes"])
    for section, check in (("gemm", _check_gemm), ("memory", _check_memory), ("rnn", _check_rnn),
                           ("conv", _check_conv)):
        if section in cal:
            _points(where, cal, section, check)


# --------------------------------------------------------------------------
# Interpolation: smooth fit of log(value) over log2 coordinates, baked on a grid
# --------------------------------------------------------------------------
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
        grid = np.stack(np.meshgrid(*[np.linspace(a, b, n) for a, b, n in zip(self.lo, self.hi, nodes)],
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


class _Curve1D:
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


# --------------------------------------------------------------------------
# Tables built once per profile
# --------------------------------------------------------------------------
def _pure_time(hw, t):
    """Measured time minus the standalone dispatch cost (CPU only), floored."""
    t = np.asarray(t, dtype=float)
    d = dispatch_s(hw)
    return np.maximum(t - d, PURE_FLOOR * t)


class _Tables:
    def __init__(self, hw):
        self.hw, self.cal = hw, hw.calibration or {}
        self._gemm = self._memory = self._rnn = self._conv = None

    # -- GEMM --------------------------------------------------------------
    def gemm(self, dtype, trans_a, trans_b, batched):
        """Interpolator and whether it takes a batch coordinate, for the closest measured group.

        Tried in order: the exact (dtype, layout, batched) group; all layouts of
        the dtype with the same batchedness; every point of the dtype.
        """
        if self._gemm is None:
            self._gemm = {}
            self._gemm_raw = {}
            for p in self.cal.get("gemm", []):
                key = (p.get("dtype", "fp32"), bool(p.get("trans_a", False)), bool(p.get("trans_b", False)),
                       p.get("batch", 1) > 1)
                self._gemm_raw.setdefault(key, []).append(p)
        for want in ((dtype, trans_a, trans_b, batched), (dtype, None, None, batched), (dtype, None, None, None)):
            if want not in self._gemm:
                pts = [p for key, ps in self._gemm_raw.items()
                       if all(w is None or w == g for w, g in zip(want, key)) for p in ps]
                self._gemm[want] = self._build_gemm(pts) if pts else None
            if self._gemm[want] is not None:
                return self._gemm[want]
        return None

    def _build_gemm(self, pts):
        hw = self.hw
        dtype = pts[0].get("dtype", "fp32")
        m, n, k, b = (np.array([p.get(f, 1) for p in pts], dtype=float) for f in ("m", "n", "k", "batch"))
        t = np.array([p["time_s"] for p in pts], dtype=float)
        eff = 2 * m * n * k * b / (hw.peak_flops(dtype) * _pure_time(hw, t))
        if hw.kind == "gpu":
            eff = eff / gemm_wave_efficiency(hw, m.astype(np.int64), n.astype(np.int64), b.astype(np.int64),
                                              k.astype(np.int64))
        has_batch = bool((b > 1).any())
        coords = np.stack([m, n, k, b] if has_batch else [m, n, k], axis=1)
        return LogInterpolator(coords, eff), has_batch

    # -- memory ------------------------------------------------------------
    def memory(self):
        if self._memory is None:
            by_op: dict[str, list] = {}
            for p in self.cal.get("memory", []):
                by_op.setdefault(p["op"], []).append(p)
            self._memory = {op: _Curve1D([p["bytes"] for p in ps], _pure_time(self.hw, [p["time_s"] for p in ps]))
                            for op, ps in by_op.items()}
        return self._memory

    # -- RNN ---------------------------------------------------------------
    def rnn(self, dtype, cell):
        if self._rnn is None:
            self._rnn = {}
            groups: dict[tuple, list] = {}
            for p in self.cal.get("rnn", []):
                groups.setdefault((p.get("dtype", "fp32"), p["cell"]), []).append(p)
            self._rnn_raw = groups
        key = (dtype, cell)
        if key not in self._rnn:
            pts = self._rnn_raw.get(key)
            self._rnn[key] = None if not pts else self._build_rnn(pts)
        return self._rnn[key]

    def _build_rnn(self, pts):
        """Per direction (fwd, bwd): per-call seconds ``F`` and per-step ratio ``r`` over (hidden, batch).

        Points of one (hidden, batch) at two or more sequence lengths are fitted
        as ``time = F + S * steps`` (least squares, ``F >= 0``) and
        ``r = S * steps / components(steps)`` at the longest one; a single
        length gives ``F = 0`` and ``r = time / components``.
        """
        from .roofline import rnn_components_split  # the analytic model the ratio is taken against
        out = {}
        for direction, col, phases in (("fwd", "fwd_s", ("fwd",)), ("bwd", "bwd_s", ("bwd_data", "bwd_weight"))):
            groups: dict[tuple, list] = {}
            for p in pts:
                if p.get(col):
                    groups.setdefault((p["hidden"], p["batch"]), []).append(p)
            if not groups:
                out[direction] = None
                continue
            coords, ratios, fixed = [], [], []
            for (h, b), ps in groups.items():
                steps = np.array([p["steps"] for p in ps], dtype=float)
                times = np.array([p[col] for p in ps], dtype=float)
                ref = max(ps, key=lambda p: p["steps"])
                f_call, slope = 0.0, None
                if len(set(steps)) >= 2:
                    slope, f_call = np.polyfit(steps, times, 1)
                    if f_call < 0 or slope <= 0:  # noise: no measurable per-call part
                        f_call, slope = 0.0, None
                per_steps = slope * ref["steps"] if slope is not None else ref[col]
                dims = {"cell": ref["cell"], "hidden": h, "input": ref["input"], "batch": b, "steps": ref["steps"],
                        "input_mode": ref.get("input_mode", "linear")}
                ops = [Op(OpKind.RNN, "calibration", dims, ref.get("dtype", "fp32"), ph) for ph in phases]
                input_s, recurrent_s = map(sum, zip(*(rnn_components_split(o, self.hw) for o in ops)))
                coords.append((h, b))
                ratios.append(max(per_steps - input_s, RNN_MIN_RECURRENT_SHARE * per_steps) / recurrent_s)
                fixed.append(max(f_call, 1e-12))
            out[direction] = (LogInterpolator(coords, ratios), LogInterpolator(coords, fixed))
        return out

    # -- conv --------------------------------------------------------------
    def conv(self, dtype, phase):
        if self._conv is None:
            self._conv = {}
        key = (dtype, phase)
        if key not in self._conv:
            col = {"fwd": "fwd_s", "bwd_data": "bwd_data_s", "bwd_weight": "bwd_weight_s"}[phase]
            pts = [p for p in self.cal.get("conv", []) if p.get("dtype", "fp32") == dtype and p.get(col)]
            self._conv[key] = self._build_conv(pts, col, phase) if pts else None
        return self._conv[key]

    def _build_conv(self, pts, col, phase):
        """Ratios measured / analytic conv time, as (interpolators over the implicit-GEMM shape,
        {geometry: (M array, ratio array)}).

        The analytic time is ``roofline.conv_compute_s`` (implicit GEMM from the GEMM table or the
        datasheet; on GPU the faster of that and Winograd), so the ratio is the smooth residual the
        analytic model misses.  Interpolators are keyed by filter class (``CONV_FILTER_CLASS``;
        nearest point when a class has fewer than its spline needs), plus ``None`` over every point
        for classes never measured: the library picks its algorithm by filter class, so a 3x3 conv
        says little about a strided 1x1 conv (5-9x the analytic time on the CPU this was written on,
        where 3x3 convs ran at 0.8-1.6x).
        """
        from .roofline import conv_compute_s  # the analytic model the ratio is taken against
        hw = self.hw
        coords, ratios, by_geometry, by_class = [], [], {}, {}
        for p in pts:
            dims = {k: int(p[k]) for k in CONV_DIMS}
            op = Op(OpKind.CONV2D, "calibration", dims, p.get("dtype", "fp32"), phase)
            ratio = float(_pure_time(hw, p[col])) / float(conv_compute_s(op, hw))
            mm = conv_gemm_shape(dims)
            coords.append(mm)
            ratios.append(ratio)
            by_geometry.setdefault(conv_geometry(dims), []).append((mm[0], ratio))
            by_class.setdefault(conv_filter_class(dims), []).append(len(ratios) - 1)
        interps = {cls: LogInterpolator([coords[i] for i in idx], [ratios[i] for i in idx])
                   for cls, idx in by_class.items()}
        interps[None] = LogInterpolator(coords, ratios)
        geoms = {}
        for g, v in by_geometry.items():
            v = sorted(v)
            geoms[g] = (np.log([m for m, _ in v]), np.log([r for _, r in v]))
        return interps, geoms


#: what fixes a conv's kernel and data layout; batch ``n`` and width ``w`` only add output rows
CONV_GEOMETRY = ("c", "h", "k", "r", "s", "stride_h", "stride_w", "pad_h", "pad_w")
#: what picks a conv's algorithm family: filter size and stride
CONV_FILTER_CLASS = ("r", "s", "stride_h", "stride_w")
CONV_DIMS = ("n", "w") + CONV_GEOMETRY


_GEOMETRY_HASH = np.array([pow(1_000_003, i, 2**61 - 1) for i in range(len(CONV_GEOMETRY))], dtype=np.int64)


def conv_geometry(d) -> tuple:
    return tuple(int(d[k]) for k in CONV_GEOMETRY)


def conv_filter_class(d) -> tuple:
    return tuple(int(d[k]) for k in CONV_FILTER_CLASS)


def conv_gemm_shape(d):
    """Implicit-GEMM view of a conv2d: ``(M = n*p*q, N = k, K = c*r*s)``."""
    p, q = conv_out_hw(d)
    return d["n"] * p * q, d["k"], d["c"] * d["r"] * d["s"]


_CACHE: "OrderedDict[int, tuple]" = OrderedDict()
_CACHE_SIZE = 32


def _tables(hw) -> _Tables | None:
    cal = hw.calibration
    if not cal:
        return None
    key = id(hw)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is hw:
        _CACHE.move_to_end(key)
        return hit[1]
    t = _Tables(hw)
    _CACHE[key] = (hw, t)  # holding hw keeps its id from being reused while cached
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return t


# --------------------------------------------------------------------------
# Lookups used by cost/roofline.py
# --------------------------------------------------------------------------
def dispatch_s(hw) -> float:
    """Standalone per-call cost subtracted from measured points (CPU; 0 on GPU or if unmeasured)."""
    if hw.kind != "cpu" or not hw.calibration:
        return 0.0
    return hw.calibration.get("overhead_us", {}).get("dispatch", 0.0) * 1e-6


def gemm_efficiency(hw, dtype, m, n, k, batch=1, trans_b=False, trans_a=False):
    """Achieved fraction of ``peak[dtype]`` for a GEMM (arrays broadcast); None if unmeasured."""
    t = _tables(hw)
    if t is None or not t.cal.get("gemm"):
        return None
    found = t.gemm(dtype, bool(trans_a), bool(trans_b), bool(np.any(np.asarray(batch) > 1)))
    if found is None:
        return None
    interp, has_batch = found
    eff = interp(m, n, k, batch) if has_batch else interp(m, n, k)
    if hw.kind == "gpu":
        eff = eff * gemm_wave_efficiency(hw, m, n, batch, k)
    return eff


def bandwidth_Bps(hw, nbytes, kind: str | None = None, curve: str | None = None):
    """Achieved bytes/s moving ``nbytes`` in one kernel of ``kind`` (the measured ``curve`` of that
    very kernel first, when given and calibrated); None if unmeasured."""
    t = _tables(hw)
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


def fresh_bytes(hw, out_bytes):
    """Bytes of an output of ``out_bytes`` that land on fresh pages (0 below the threshold); None if unmeasured."""
    alloc = (hw.calibration or {}).get("allocation", {})
    if "first_touch_s_per_byte" not in alloc or "always_fresh_bytes" not in alloc:
        return None
    b = np.asarray(out_bytes, dtype=float)
    out = np.where(b >= alloc["always_fresh_bytes"], b, 0.0)
    return out if out.ndim else float(out)


def rnn_time_s(hw, op, split=None):
    """Seconds of one fused RNN layer phase, from measured cells; None if that cell is unmeasured.

    ``split`` is ``roofline.rnn_components_split(op, hw)``, the (input GEMM, recurrent) components
    time of ``op`` (the roofline passes it to avoid costing the components twice).
    """
    t = _tables(hw)
    if t is None or not t.cal.get("rnn"):
        return None
    table = t.rnn(op.dtype, op.dims["cell"])
    if table is None:
        return None
    fit = table["fwd"] if op.phase == "fwd" else table["bwd"]
    if fit is None:
        return None
    from .roofline import rnn_components_split, rnn_components_time
    input_s, recurrent_s = split if split is not None else rnn_components_split(op, hw)
    ratio, fixed = fit
    h, b = op.dims["hidden"], op.dims["batch"]
    f_call = fixed(h, b)
    if op.phase != "fwd":  # the per-call part of bwd_s, split like the rest (see module docstring)
        other = "bwd_weight" if op.phase == "bwd_data" else "bwd_data"
        analytic_s = input_s + recurrent_s
        both = analytic_s + rnn_components_time(Op(op.kind, op.path, op.dims, op.dtype, other), hw)
        f_call = f_call * analytic_s / both
    return input_s + recurrent_s * ratio(h, b) + f_call


def conv_ratio(hw, op):
    """Measured / analytic time of a conv2d phase (arrays broadcast); None if no conv was measured.

    A conv measured at its own geometry (another batch or width) takes that geometry's ratios,
    piecewise linear in log M between the measured batches and the nearest one beyond them; any
    other takes the interpolated ratio of its filter class, else of all measured convs.  A phase
    with no measurements borrows the forward ratios.
    """
    t = _tables(hw)
    if t is None or not t.cal.get("conv"):
        return None
    table = t.conv(op.dtype, op.phase) or t.conv(op.dtype, "fwd")
    if table is None:
        return None
    interps, geoms = table
    d = op.dims
    arrs = dict(zip(CONV_DIMS, np.broadcast_arrays(*[np.asarray(d[k]) for k in CONV_DIMS])))
    mm, nn_, kk = conv_gemm_shape(arrs)
    classes = np.stack([arrs[k] for k in CONV_FILTER_CLASS], axis=-1).reshape(-1, len(CONV_FILTER_CLASS))
    ratio = np.empty(classes.shape[0])
    # a sweep varies widths and batches; the filter class is almost always one row
    for cls in classes[:1] if (classes == classes[0]).all() else np.unique(classes, axis=0):
        sel = np.all(classes == cls, axis=1)
        interp = interps.get(tuple(int(v) for v in cls), interps[None])
        ratio[sel] = interp(mm.ravel()[sel], nn_.ravel()[sel], kk.ravel()[sel])
    geometry = np.stack([arrs[k] for k in CONV_GEOMETRY], axis=-1).reshape(-1, len(CONV_GEOMETRY))
    key = geometry.astype(np.int64) @ _GEOMETRY_HASH  # one integer per row: a cheap first test
    for g, (log_m, log_r) in geoms.items():
        sel = key == np.asarray(g, dtype=np.int64) @ _GEOMETRY_HASH
        if sel.any():
            sel[sel] = np.all(geometry[sel] == g, axis=1)
        if sel.any():  # this very conv was measured: its own ratios, piecewise linear in log M
            ratio[sel] = np.exp(np.interp(np.log(mm.ravel()[sel]), log_m, log_r))
    ratio = ratio.reshape(mm.shape)
    return ratio if ratio.ndim else float(ratio)
