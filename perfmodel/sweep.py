"""Vectorized sweeps: every (hardware, batch) pair is one NumPy pass over all widths."""
from __future__ import annotations

import numpy as np

from .hardware import HardwareProfile
from .predict import predict_arrays

COLUMNS = ("model", "hardware", "width", "batch", "params", "flops_per_step", "bytes_per_step",
           "time_per_step_s", "compute_s", "memory_s", "overhead_s", "memory_bytes", "fits_in_memory")


def sweep(model: str, widths, hardwares: list[HardwareProfile], batches=(None,), dtype="fp32",
          optimizer="sgd", **knobs) -> dict[str, np.ndarray]:
    """Columns (one entry per configuration) for widths x batches x hardwares."""
    widths = np.asarray(widths, dtype=np.int64)
    parts = []
    for hw in hardwares:
        for b in batches:
            kb = dict(knobs) if b is None else {**knobs, "batch": b}
            cols = predict_arrays(model, widths, hw, dtype, optimizer, **kb)
            n = widths.size
            cols["model"] = np.full(n, model, dtype=object)
            cols["hardware"] = np.full(n, hw.name, dtype=object)
            cols["width"] = widths
            from .architectures import get_spec
            cols["batch"] = np.full(n, b if b is not None else get_spec(model).knobs["batch"].default)
            parts.append(cols)
    return {c: np.concatenate([np.broadcast_to(p[c], widths.shape) for p in parts]) for c in COLUMNS}


def rows(columns: dict[str, np.ndarray]) -> list[dict]:
    n = len(columns["width"])
    return [{c: columns[c][i].item() if hasattr(columns[c][i], "item") else columns[c][i] for c in COLUMNS}
            for i in range(n)]
