"""Configuration grids, vectorized: one NumPy pass over all (width, batch) pairs per hardware profile.

(Training sweeps that measure steps to converge are :mod:`perfmodel.steps.sweep`.)
"""
from __future__ import annotations

import numpy as np

from .architectures import get_spec
from .hardware import HardwareProfile
from .predict import predict_arrays

COLUMNS = ("model", "hardware", "width", "batch", "params", "flops_per_step", "bytes_per_step",
           "time_per_step_s", "compute_s", "memory_s", "overhead_s", "memory_bytes", "fits_in_memory")


def sweep(model: str, widths, hardwares: list[HardwareProfile], batches=(None,), dtype="fp32",
          optimizer="sgd", **knobs) -> dict[str, np.ndarray]:
    """Columns (one entry per configuration) for widths x batches x hardwares."""
    default_batch = get_spec(model).knobs["batch"].default
    b_grid, w_grid = np.meshgrid([default_batch if b is None else b for b in batches],
                                 np.asarray(widths, dtype=np.int64), indexing="ij")
    w, b = w_grid.ravel(), b_grid.ravel().astype(np.int64)
    parts = []
    for hw in hardwares:
        cols = predict_arrays(model, w, hw, dtype, optimizer, **{**knobs, "batch": b})
        cols.update(model=np.full(w.size, model, dtype=object), hardware=np.full(w.size, hw.name, dtype=object),
                    width=w, batch=b)
        parts.append(cols)
    return {c: np.concatenate([np.broadcast_to(p[c], w.shape) for p in parts]) for c in COLUMNS}


def rows(columns: dict[str, np.ndarray]) -> list[dict]:
    n = len(columns["width"])
    return [{c: columns[c][i].item() if hasattr(columns[c][i], "item") else columns[c][i] for c in COLUMNS}
            for i in range(n)]
