"""Configuration grids, vectorized: one NumPy pass over all (width, batch) pairs per hardware profile.

(Training sweeps that measure steps to converge are :mod:`perfmodel.steps.sweep`.)
"""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from .architectures import get_spec
from .architectures.size import as_int64
from .hardware import HardwareProfile
from .predict import predict_arrays

COLUMNS = ("model", "hardware", "width", "batch", "params", "flops_per_step", "bytes_per_step",
           "time_per_step_s", "compute_s", "memory_s", "overhead_s", "memory_bytes", "fits_in_memory")


#: configurations priced per NumPy pass when a sweep is streamed (bounds memory, keeps the passes long)
CHUNK = 1 << 16


def _grid(model: str, widths, batches) -> tuple[np.ndarray, np.ndarray]:
    """(widths, batches) of every configuration, batch-major, as int64 arrays."""
    default_batch = get_spec(model).knobs["batch"].default
    b_grid, w_grid = np.meshgrid(as_int64([default_batch if b is None else b for b in batches], "batch"),
                                 as_int64(widths), indexing="ij")
    return w_grid.ravel(), b_grid.ravel()


def sweep_chunks(model: str, widths, hardwares: list[HardwareProfile], batches=(None,), dtype="fp32",
                 optimizer="sgd", chunk: int = CHUNK, **knobs):
    """The columns of :func:`sweep` in pieces of at most ``chunk`` configurations, in the same order
    (hardware by hardware, batch-major): a million configurations stream through a few MiB."""
    w, b = _grid(model, widths, batches)
    for hw in hardwares:
        for i in range(0, w.size, chunk):
            wi, bi = w[i:i + chunk], b[i:i + chunk]
            cols = predict_arrays(model, wi, hw, dtype, optimizer, **{**knobs, "batch": bi})
            cols.update(model=np.full(wi.size, model, dtype=object),
                        hardware=np.full(wi.size, hw.name, dtype=object), width=wi, batch=bi)
            yield {c: np.broadcast_to(cols[c], wi.shape) for c in COLUMNS}


def sweep(model: str, widths, hardwares: list[HardwareProfile], batches=(None,), dtype="fp32",
          optimizer="sgd", **knobs) -> dict[str, np.ndarray]:
    """Columns (one entry per configuration) for widths x batches x hardwares."""
    n = max(1, len(widths) * len(batches))
    parts = list(sweep_chunks(model, widths, hardwares, batches, dtype, optimizer, chunk=n, **knobs))
    return {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}


def _quoted(text) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([text])
    return buf.getvalue()


def _cells(a: np.ndarray) -> list[str]:
    """A column's CSV cells, as ``csv.writer`` writes them: str() of each number (repr of floats), NaN and
    infinities empty, text quoted where it needs it."""
    if a.dtype == object:
        vals = a.tolist()
        quoted = {v: _quoted(v) for v in set(vals)}
        return [quoted[v] for v in vals]
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return [repr(x) if math.isfinite(x) else "" for x in a.tolist()]
    return list(map(str, a.tolist()))


def csv_chunks(chunks):
    """CSV text of :func:`sweep_chunks`' pieces: the header with the first, then one line per configuration
    (joined column-wise: the same text as ``csv.writer``, in a third less time)."""
    head = ",".join(COLUMNS) + "\n"
    for cols in chunks:
        lines = "\n".join(map(",".join, zip(*(_cells(cols[c]) for c in COLUMNS), strict=True)))
        yield head + lines + "\n" if lines else head
        head = ""


def rows(columns: dict[str, np.ndarray]) -> list[dict]:
    n = len(columns["width"])
    return [{c: columns[c][i].item() if hasattr(columns[c][i], "item") else columns[c][i] for c in COLUMNS}
            for i in range(n)]
