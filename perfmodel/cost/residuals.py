"""Measured residual corrections for conv2d and fused RNN layers: measured time vs the roofline.

The analytic roofline (:mod:`perfmodel.cost.roofline`) misses what a library does inside
a conv or a fused RNN layer (algorithm choice, weight re-layout, workspaces).  Where the
profile measured such layers (``calibration.conv``, ``calibration.rnn``; schema:
:mod:`perfmodel.hardware.calibration`), this module interpolates the measured / analytic
ratio and :mod:`perfmodel.cost.op_time` scales the analytic time by it.  Every lookup
returns ``None`` when nothing applicable was measured.

* **Conv2d**, per phase: ``ratio = pure measured time / roofline.conv_compute_s``
  (``pure``: :func:`perfmodel.cost.rates.pure_time`), interpolated as ``log(ratio)``
  over the implicit-GEMM shape ``(M = n*p*q, N = k, K = c*r*s)`` within the conv's
  filter class (filter size and stride: the library picks its algorithm by them),
  over all points for a class never measured; an unmeasured backward phase uses the
  forward ratios.  A conv whose geometry (channels, height, filter, stride, padding)
  was measured at other batches or widths takes its own ratios, piecewise linear in
  ``log M`` (the end values beyond): more images or frames add output rows to the
  same kernel, whereas the interpolator, clamped to the measured box, would borrow a
  different conv's.
* **RNN** (fused ``nn.LSTM``/``nn.GRU`` layer): layer time is ``F + input + r * recurrent``.
  ``input`` is the input GEMM over all steps ``[steps*batch x input] @ [input x
  gates*hidden]`` and its gradients, costed from the GEMM rates like any GEMM (so a
  first layer whose input is much wider than its hidden size is not scaled by a ratio
  measured at input = hidden); ``recurrent`` is the rest of ``ops.rnn_components``
  (per-step GEMMs and cell kernels, linear in steps); ``r`` is the measured ratio to it
  and ``F`` the measured per-call cost, both interpolated over ``(log2 hidden, log2
  batch)``.  ``F`` and ``r`` come from points of one shape at two or more sequence
  lengths, a least-squares line ``time = F + S * steps`` (``F >= 0``), with
  ``r = (S * steps - input) / recurrent`` at the longest; a single length gives
  ``F = 0``.  Where the input GEMM already accounts for more than
  ``1 - RNN_MIN_RECURRENT_SHARE`` of a measured point, the recurrent part is kept at
  that share.  Phase ``fwd`` uses ``fwd_s``; ``bwd_s`` (data + weight gradients
  together) is split between ``bwd_data`` and ``bwd_weight`` in proportion to their
  component times (both get the same ``r``, and ``F`` is shared in that proportion).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..ops import Op, OpKind, conv_out_hw
from .interp import LogInterpolator
from .rates import ProfileCache, pure_time
from .roofline import conv_compute_s, rnn_components_split, rnn_components_time

#: smallest share of a measured RNN point's per-step time attributed to the recurrent part
RNN_MIN_RECURRENT_SHARE = 0.1
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


class _ResidualTables:
    """The conv and RNN residual interpolators of one profile, built on first use."""

    def __init__(self, hw):
        self.hw, self.cal = hw, hw.calibration or {}
        self._rnn = self._conv = None

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
        ``r = max(S * steps - input, RNN_MIN_RECURRENT_SHARE * S * steps) / recurrent``
        at the longest one; a single length gives ``F = 0`` and ``S * steps = time``.
        """
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
                dims = {"hidden": h, "input": ref["input"], "batch": b, "steps": ref["steps"]}
                attrs = {"cell": ref["cell"], "input_mode": ref.get("input_mode", "linear")}
                ops = [Op(OpKind.RNN, "calibration", dims, ref.get("dtype", "fp32"), ph, attrs=attrs)
                       for ph in phases]
                input_s, recurrent_s = map(sum, zip(*(rnn_components_split(o, self.hw) for o in ops), strict=True))
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
        says little about a strided 1x1 conv.
        """
        hw = self.hw
        coords, ratios, by_geometry, by_class = [], [], {}, {}
        for p in pts:
            dims = {k: int(p[k]) for k in CONV_DIMS}
            op = Op(OpKind.CONV2D, "calibration", dims, p.get("dtype", "fp32"), phase)
            ratio = float(pure_time(hw, p[col])) / float(conv_compute_s(op, hw))
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


residual_tables = ProfileCache(_ResidualTables)


def rnn_time_s(hw, op, split=None):
    """Seconds of one fused RNN layer phase, from measured cells; None if that cell is unmeasured.

    ``split`` is ``roofline.rnn_components_split(op, hw)``, the (input GEMM, recurrent) components
    time of ``op`` (``op_time`` passes it to avoid costing the components twice).
    """
    t = residual_tables(hw)
    if t is None or not t.cal.get("rnn"):
        return None
    table = t.rnn(op.dtype, op.attrs["cell"])
    if table is None:
        return None
    fit = table["fwd"] if op.phase == "fwd" else table["bwd"]
    if fit is None:
        return None
    input_s, recurrent_s = split if split is not None else rnn_components_split(op, hw)
    ratio, fixed = fit
    h, b = op.dims["hidden"], op.dims["batch"]
    f_call = fixed(h, b)
    if op.phase != "fwd":  # the per-call part of bwd_s, split like the rest (see module docstring)
        other = "bwd_weight" if op.phase == "bwd_data" else "bwd_data"
        analytic_s = input_s + recurrent_s
        both = analytic_s + rnn_components_time(replace(op, phase=other), hw)
        f_call = f_call * analytic_s / both
    return input_s + recurrent_s * ratio(h, b) + f_call


def conv_ratio(hw, op):
    """Measured / analytic time of a conv2d phase (arrays broadcast); None if no conv was measured.

    A conv measured at its own geometry (another batch or width) takes that geometry's ratios,
    piecewise linear in log M between the measured batches and the nearest one beyond them; any
    other takes the interpolated ratio of its filter class, else of all measured convs.  A phase
    with no measurements borrows the forward ratios.
    """
    t = residual_tables(hw)
    if t is None or not t.cal.get("conv"):
        return None
    table = t.conv(op.dtype, op.phase) or t.conv(op.dtype, "fwd")
    if table is None:
        return None
    interps, geoms = table
    d = op.dims
    arrs = dict(zip(CONV_DIMS, np.broadcast_arrays(*[np.asarray(d[k]) for k in CONV_DIMS]), strict=True))
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
