"""Device and dtype plumbing shared by the microbenchmarks."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from . import backend

TORCH_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16",
                "fp8": "float8_e4m3fn"}


@dataclass
class Context:
    """What every benchmark needs: where to run, what to run, how to time."""

    device: str          # "cpu" or "cuda:N"
    kind: str            # "cpu" | "gpu"
    dtypes: tuple
    plan: object         # perfmodel.calibrate.plan.CalibrationPlan
    clock: str = "wall"  # CPU clock, see perfmodel.calibrate.timing
    stat: str = "median"  # statistic over repeats, see perfmodel.calibrate.timing

    @property
    def timing(self) -> dict:
        p = self.plan
        return {"device": self.device, "warmup": p.warmup, "repeats": p.repeats, "min_block_s": p.min_block_s,
                "clock": self.clock, "stat": self.stat}


def torch_dtype(dtype: str):
    import torch
    return getattr(torch, TORCH_DTYPES[dtype])


@contextlib.contextmanager
def matmul_precision(dtype: str, device: str):
    """fp32 means true fp32 (TF32 off); tf32 means fp32 tensors with TF32 tensor cores on."""
    import torch
    if not device.startswith("cuda"):
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def supported_dtypes(wanted, device: str, matmul) -> tuple:
    """The dtypes of ``wanted`` this device runs a matmul in (tried, not assumed): ``matmul(dtype)``
    runs one small GEMM in that dtype (``perfmodel.calibrate.gemm`` builds it) and raises where it cannot."""
    out = []
    for dt in wanted:
        if device.startswith("cuda"):
            major, minor = backend.get().capability(device)
            if dt == "tf32" and major < 8:
                continue
            if dt == "bf16" and not backend.get().bf16_supported():
                continue
            if dt == "fp8" and (major, minor) < (8, 9):
                continue
        elif dt in ("tf32", "fp8"):
            continue
        try:
            matmul(dt)
        except Exception:
            continue
        out.append(dt)
    return tuple(out)


def free_cache(device: str) -> None:
    if device.startswith("cuda"):
        backend.get().empty_cache()
