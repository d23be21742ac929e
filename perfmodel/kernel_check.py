"""Kernel-level predictions against published timings (DeepBench layout).

A CSV's kind follows from its columns (see :data:`LAYOUTS`; the layout of
Baidu DeepBench's results, https://github.com/baidu-research/DeepBench):

* gemm: ``gpu, precision, M, N, K, transA, transB, time_ms``  (C = op(A)[MxK] op(B)[KxN])
* rnn:  ``gpu, precision, cell, hidden, batch, timesteps, fwd_ms, bwd_in_ms, bwd_w_ms``
* conv: ``gpu, precision, W, H, C, N, K, S, R, pad_w, pad_h, stride_w, stride_h, fwd_ms, bwd_in_ms, bwd_w_ms``

Each measured phase of a row becomes one prediction: the row is turned into
an :class:`~perfmodel.ops.Op` and costed by :func:`perfmodel.cost.op_time.op_time`.
Rows that cannot be modelled are returned with the reason, never dropped.
"""
from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from .cost.op_time import op_time
from .errors import PerfmodelError
from .hardware import HardwareProfile
from .ops import Op, OpKind, conv_out_hw

LAYOUTS = {
    "gemm": {"numeric": ("M", "N", "K", "time_ms"), "text": ("gpu", "precision", "transA", "transB")},
    "rnn": {"numeric": ("hidden", "batch", "timesteps", "fwd_ms", "bwd_in_ms", "bwd_w_ms"),
            "text": ("gpu", "precision", "cell")},
    "conv": {"numeric": ("W", "H", "C", "N", "K", "S", "R", "pad_w", "pad_h", "stride_w", "stride_h",
                         "fwd_ms", "bwd_in_ms", "bwd_w_ms"), "text": ("gpu", "precision")},
}
#: measured columns that may be empty ("not measured")
OPTIONAL = {"bwd_in_ms", "bwd_w_ms"}
#: numeric columns that may be 0 (paddings); every other one is a size (an integer >= 1) or a time (> 0)
ZERO_OK = {"pad_w", "pad_h"}
TIME_COLUMNS = {"time_ms", "fwd_ms", "bwd_in_ms", "bwd_w_ms"}
PHASE_COLUMNS = {"gemm": {"fwd": "time_ms"},
                 "rnn": {"fwd": "fwd_ms", "bwd_data": "bwd_in_ms", "bwd_weight": "bwd_w_ms"},
                 "conv": {"fwd": "fwd_ms", "bwd_data": "bwd_in_ms", "bwd_weight": "bwd_w_ms"}}
#: DeepBench's cell names -> perfmodel's (vanilla = ReLU RNN)
CELL_NAMES = {"vanilla": "relu", "relu": "relu", "tanh": "tanh", "lstm": "lstm", "gru": "gru"}


@dataclass(frozen=True)
class KernelTable:
    kind: str
    path: str
    rows: list[dict]


def detect_kind(columns, path="<csv>") -> str:
    cols = set(columns)
    for kind in ("conv", "rnn", "gemm"):
        need = set(LAYOUTS[kind]["numeric"]) | set(LAYOUTS[kind]["text"])
        if need <= cols:
            return kind
    best = min(LAYOUTS, key=lambda k: len((set(LAYOUTS[k]["numeric"]) | set(LAYOUTS[k]["text"])) - cols))
    missing = sorted((set(LAYOUTS[best]["numeric"]) | set(LAYOUTS[best]["text"])) - cols)
    raise PerfmodelError(f"{path}: not a gemm, rnn or conv kernel table; closest is {best}, missing columns: "
                         f"{', '.join(missing)}")


def read_kernel_csv(path) -> KernelTable:
    """Read and check a kernel CSV: missing columns, non-UTF-8 text, sizes that are not integers >= 1
    (paddings >= 0) and times that are not > 0 raise one-line errors."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            raw = list(reader)
    except OSError as e:
        raise PerfmodelError(f"cannot read {str(p)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise PerfmodelError(f"kernel table {str(p)!r} is not UTF-8 text (byte {e.start}); "
                             "write it as UTF-8 CSV") from None
    kind = detect_kind(columns, str(p))
    rows = []
    for i, r in enumerate(raw, start=2):  # line 1 is the header
        row = {c: (r[c] or "").strip() for c in LAYOUTS[kind]["text"]}
        for c in LAYOUTS[kind]["numeric"]:
            v = (r.get(c) or "").strip()
            if v == "" and c in OPTIONAL:
                row[c] = None
                continue
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            if c in TIME_COLUMNS:
                ok, allowed = math.isfinite(x) and x > 0, "a time > 0 (milliseconds)"
            else:
                ok = math.isfinite(x) and x.is_integer() and x >= (0 if c in ZERO_OK else 1)
                allowed = f"an integer >= {0 if c in ZERO_OK else 1}"
            if not ok:
                raise PerfmodelError(f"{p}: line {i}, column {c!r}: {v!r} is not allowed; it must be {allowed}")
            row[c] = x
        rows.append(row)
    if not rows:
        raise PerfmodelError(f"{p}: no data rows")
    return KernelTable(kind, str(p), rows)


def matches_gpu(row_gpu: str, hw: HardwareProfile) -> bool:
    """DeepBench names a GPU by its family ('V100'); profiles by model ('V100-SXM2')."""
    return bool(row_gpu) and hw.name.lower().startswith(row_gpu.lower())


def _dtype(row) -> str:
    return row["precision"].lower()


def gemm_dims(row: dict) -> dict:
    """A DeepBench GEMM row in the op IR's convention.

    DeepBench calls cuBLAS, which is column-major: ``C[MxN] = op(A)[MxK] op(B)[KxN]``.  The IR
    follows torch (row-major), and torch runs a row-major ``C[mxn] = op(a) op(b)`` as the
    column-major ``C^T = op(b)^T op(a)^T``, i.e. cuBLAS ``(M, N, K, transA, transB) = (n, m, k,
    trans_b, trans_a)``.  So the row's kernel is the IR GEMM ``m = N, n = M, k = K, trans_a =
    transB, trans_b = transA`` -- and DeepBench's RNN-shaped rows (``N`` = batch) land where the
    IR's RNN GEMMs (``m`` = batch) look them up.  Returned as a GEMM calibration point's fields;
    :func:`row_op` puts ``m, n, k`` in the op's dims and the layout in its attrs.
    """
    return {"m": int(row["N"]), "n": int(row["M"]), "k": int(row["K"]),
            "trans_a": row["transB"] == "T", "trans_b": row["transA"] == "T"}


def row_op(kind: str, row: dict, phase: str) -> Op:
    """The op a kernel row's phase measures."""
    i = lambda c: int(row[c])  # noqa: E731
    if kind == "gemm":
        g = gemm_dims(row)
        return Op(OpKind.GEMM, "gemm", {k: g[k] for k in ("m", "n", "k")}, _dtype(row),
                  attrs={k: g[k] for k in ("trans_a", "trans_b")})
    if kind == "rnn":
        cell = CELL_NAMES.get(row["cell"].lower())
        if cell is None:
            raise PerfmodelError(f"unknown RNN cell {row['cell']!r}; allowed: {', '.join(CELL_NAMES)}")
        # DeepBench's rnn_bench (code/nvidia/rnn_bench.cu) builds its cuDNN RNN descriptor with
        # CUDNN_SKIP_INPUT: an input of the hidden size enters the cell with no input GEMM.
        return Op(OpKind.RNN, f"rnn/{cell}", {"hidden": i("hidden"), "input": i("hidden"), "batch": i("batch"),
                                              "steps": i("timesteps")}, _dtype(row), phase,
                  attrs={"cell": cell, "input_mode": "skip"})
    return Op(OpKind.CONV2D, "conv", {"n": i("N"), "c": i("C"), "h": i("H"), "w": i("W"), "k": i("K"),
                                      "r": i("R"), "s": i("S"), "stride_h": i("stride_h"),
                                      "stride_w": i("stride_w"), "pad_h": i("pad_h"), "pad_w": i("pad_w")},
              _dtype(row), phase)


def suspect_reason(kind: str, row: dict, phase: str) -> str | None:
    """Data-quality screen for conv backward columns that hold a tensor dimension, not a time.

    In the extracted DeepBench V100 conv table some first-layer rows carry a
    whole number equal to an input or output width/height in ``bwd_w_ms``
    (e.g. 341 = (700 - 20) // 2 + 1): the backward columns of those rows are
    shifted, so neither backward value of the row is trusted.
    """
    if kind != "conv" or phase == "fwd" or row["bwd_w_ms"] is None:
        return None
    v = row["bwd_w_ms"]
    d = row_op(kind, row, "fwd").dims
    p, q = conv_out_hw(d)
    if float(v).is_integer() and int(v) in {int(p), int(q), d["h"], d["w"]}:
        return f"bwd_w_ms={v:g} equals a tensor dimension; backward columns of this row look shifted"
    return None


#: a measured time faster than this fraction of the datasheet peak FLOP/s allows is not a measurement
PEAK_SLACK = 1.1


def implausible_reason(kind: str, row: dict, phase: str, hw: HardwareProfile) -> str | None:
    """A time that would need more than the device's fastest peak FLOP/s (x PEAK_SLACK) is not a real timing.

    The bound is the highest peak of any dtype (libraries may run fp32 on tensor cores, as
    cuDNN 7's ``CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION`` does on V100), so only impossible rows go.
    The published P100 fp16 GRU ``bwd_w_ms`` column, for instance, stays at ~1.3 ms from 187 to 1500
    time steps: at 1500 steps that is hundreds of times the P100's fp16 peak.
    """
    if kind == "conv":  # Winograd and FFT algorithms do fewer multiplies than the direct count
        return None
    col = PHASE_COLUMNS[kind][phase]
    measured = row.get(col)
    if measured is None or _dtype(row) not in hw.peak_tflops:
        return None
    flops = row_op(kind, row, phase).flops
    rate = flops / (measured * 1e-3)
    best = max(hw.peak_tflops, key=hw.peak_tflops.get)
    peak = hw.peak_flops(best)
    if rate > PEAK_SLACK * peak:
        return (f"{col}={measured:g} implies {rate / 1e12:.3g} TFLOP/s, above {hw.name}'s fastest peak "
                f"({peak / 1e12:.3g} TFLOP/s {best}): not a plausible timing")
    return None


def predict_rows(table: KernelTable, hw: HardwareProfile, gpu: str | None = None) -> tuple[list, list]:
    """(predictions, unmodelled): one prediction per measured phase of each matching row."""
    preds, skipped = [], []
    for idx, row in enumerate(table.rows):
        if gpu is not None and row["gpu"].lower() != gpu.lower():
            continue
        if gpu is None and not matches_gpu(row["gpu"], hw):
            continue
        for phase, col in PHASE_COLUMNS[table.kind].items():
            measured = row[col]
            base = {"kind": table.kind, "row": idx, "gpu": row["gpu"], "dtype": _dtype(row), "phase": phase}
            if measured is None:
                continue
            reason = suspect_reason(table.kind, row, phase)
            try:
                reason = reason or implausible_reason(table.kind, row, phase, hw)
                if reason is None:
                    t = op_time(row_op(table.kind, row, phase), hw, isolated=True)
            except PerfmodelError as e:
                reason = str(e)
            if reason is not None:
                skipped.append({**base, "reason": reason})
                continue
            predicted = float(t.time_s)
            measured_s = measured * 1e-3
            preds.append({**base, "shape": _shape(table.kind, row), "measured_s": measured_s,
                          "predicted_s": predicted, "error": (predicted - measured_s) / measured_s,
                          "bound": str(t.bound)})
    return preds, skipped


def _shape(kind, row) -> str:
    if kind == "gemm":
        return f"{int(row['M'])}x{int(row['N'])}x{int(row['K'])} {row['transA']}{row['transB']}"
    if kind == "rnn":
        return f"{row['cell']} h{int(row['hidden'])} b{int(row['batch'])} t{int(row['timesteps'])}"
    return (f"{int(row['W'])}x{int(row['H'])}x{int(row['C'])} n{int(row['N'])} k{int(row['K'])} "
            f"{int(row['R'])}x{int(row['S'])}/{int(row['stride_h'])}")


def mape(preds: list[dict]) -> dict[str, float]:
    """Mean absolute percentage error per kernel kind, as a fraction (0.12 = 12%, as ``validate --json``)."""
    out: dict[str, list] = {}
    for p in preds:
        out.setdefault(p["kind"], []).append(abs(p["error"]))
    return {k: sum(v) / len(v) for k, v in out.items()}


def summary(preds: list[dict]) -> list[dict]:
    """Per (kind, dtype, phase): rows, MAPE and median signed error (fractions), to show where errors sit.

    A median signed error far from 0 is a bias (something the model leaves out for that group);
    a MAPE well above its absolute median is scatter.  ``debiased_mape`` separates the two: the MAPE
    left after scaling the group's predictions by its median measured / predicted ratio, i.e. what a
    correction factor per group would leave -- the scatter no constant per group can remove."""
    groups: dict[tuple, list] = {}
    for p in preds:
        groups.setdefault((p["kind"], p["dtype"], p["phase"]), []).append(p["error"])
    out = []
    for (k, d, ph), v in sorted(groups.items()):
        factor = statistics.median(1.0 / (1.0 + e) for e in v)  # measured / predicted
        out.append({"kind": k, "dtype": d, "phase": ph, "rows": len(v), "mape": sum(map(abs, v)) / len(v),
                    "median_error": statistics.median(v),
                    "debiased_mape": sum(abs(factor * (1.0 + e) - 1.0) for e in v) / len(v)})
    return out
