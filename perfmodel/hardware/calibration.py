"""Schema of a profile's ``calibration`` section: the raw measured points, validated.

The profile stores **raw measured points** (written by ``perfmodel calibrate`` or
imported from DeepBench); :func:`validate_calibration` rejects a malformed section
with one line naming the file and the key.  What the points mean to the cost model
is documented where they are read: the GEMM, memory, overhead and allocation rates
in :mod:`perfmodel.cost.rates`, the conv and RNN residuals in
:mod:`perfmodel.cost.residuals`.

Format (every section optional; times in seconds, sizes in bytes)::

    provenance   {device, kind: cpu|gpu, date, command, torch, source, ...}
    gemm         [{dtype, m, n, k, batch, trans_a, trans_b, time_s, spread?, offgrid?, hot?}]
    memory       [{op: copy|elementwise|reduction|batchnorm[_bwd]|maxpool[_bwd], bytes, time_s, spread?}]
    overhead_us  {default, dispatch, <op kind>, backward_call?, optimizer_call?: microseconds}
    allocation   {first_touch_s_per_byte, always_fresh_bytes?, first_touch_cold_s_per_byte?, cold_bytes?}  (CPU)
    rnn          [{dtype, cell, hidden, batch, steps, input, input_mode?, fwd_s, bwd_s?, spread?}]
    conv         [{dtype, n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w,
                   fwd_s, bwd_data_s?, bwd_weight_s?, spread?}]
    collectives  {...}  (owned by ``perfmodel.calibrate.collectives``; only checked to be an object)

``overhead_us[kind]`` is the fixed cost of one kernel of that kind *inside a training
step* (forward call plus its autograd backward), in units of the op IR's kernels;
``overhead_us["dispatch"]`` is the cost of one tiny op called on its own, the way
the GEMM, memory and conv points were timed.  ``backward_call`` and
``optimizer_call`` are fixed costs per *call*: one ``loss.backward()`` and one
``optimizer.step()`` + ``zero_grad()`` per training step.  ``spread`` is the
relative spread of the repeated timings of a point.  A GEMM point with ``offgrid: true`` is one
of the calibration's shapes off the power-of-two grid: it measures the efficiency lost there
(:mod:`perfmodel.cost.alignment`) and stays out of the grid's interpolation.
"""
from __future__ import annotations

import math

from ..errors import ProfileError
from ..ops import DTYPES, RNN_CELLS, conv_out_hw

SECTIONS = ("provenance", "gemm", "memory", "overhead_us", "allocation", "rnn", "conv", "collectives")
MEMORY_OPS = ("copy", "elementwise", "reduction")
#: kernels timed as curves of their own (``perfmodel.calibrate.layers``): an op whose ``meta["curve"]`` names
#: one reads it in the forward phase and ``<name>_bwd`` in its backward
LAYER_CURVES = ("batchnorm", "maxpool")
CURVE_OPS = MEMORY_OPS + LAYER_CURVES + tuple(f"{c}_bwd" for c in LAYER_CURVES)
#: cuDNN's input modes: CUDNN_LINEAR_INPUT (an input GEMM) or CUDNN_SKIP_INPUT (none; DeepBench's rnn_bench)
RNN_INPUT_MODES = ("linear", "skip")
#: how the points were timed (``perfmodel calibrate``'s --clock on a CPU, CUDA events on a GPU) and summarized
PROVENANCE_CLOCKS = ("wall", "cpu", "cuda_events")
PROVENANCE_STATS = ("median", "min")

_GEMM_INT = ("m", "n", "k")
_CONV_INT = ("n", "c", "h", "w", "k", "r", "s", "stride_h", "stride_w")
_CONV_NONNEG = ("pad_h", "pad_w")
_RNN_INT = ("hidden", "batch", "steps", "input")


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
    for n in ("trans_a", "trans_b", "offgrid", "hot"):
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
    if prov.get("threads") is not None:  # validate runs with these threads
        _pos_int(where, "provenance.threads", prov["threads"])
    for k, allowed in (("clock", PROVENANCE_CLOCKS), ("stat", PROVENANCE_STATS)):
        if k in prov and prov[k] not in allowed:
            _fail(where, f"provenance.{k}", f"must be one of {', '.join(allowed)}, got {prov[k]!r}")
    for k, v in cal.get("overhead_us", {}).items():
        _pos_num(where, f"overhead_us.{k}", v, allow_zero=True)
    alloc = cal.get("allocation", {})
    if "first_touch_s_per_byte" in alloc:
        _pos_num(where, "allocation.first_touch_s_per_byte", alloc["first_touch_s_per_byte"], allow_zero=True)
    if "always_fresh_bytes" in alloc:
        _pos_int(where, "allocation.always_fresh_bytes", alloc["always_fresh_bytes"])
    if "first_touch_cold_s_per_byte" in alloc:
        _pos_num(where, "allocation.first_touch_cold_s_per_byte", alloc["first_touch_cold_s_per_byte"],
                 allow_zero=True)
        _pos_int(where, "allocation.cold_bytes", alloc.get("cold_bytes"))
    for section, check in (("gemm", _check_gemm), ("memory", _check_memory), ("rnn", _check_rnn),
                           ("conv", _check_conv)):
        if section in cal:
            _points(where, cal, section, check)
