"""Fresh-allocation cost: an output written to pages the OS must first map and zero.

On CPU, PyTorch allocates with glibc ``malloc``: a request at or above the
mmap threshold gets fresh pages from the kernel, and every page is faulted in
(and zeroed) on first write.  The threshold adapts to the sizes a program
frees but never exceeds ``DEFAULT_MMAP_THRESHOLD_MAX`` -- 32 MiB on 64-bit
glibc (``malloc/malloc.c``) -- so an output of 32 MiB or more is faulted in on
every training step.  Measured here: writing a freshly allocated buffer minus
writing a reused one, per byte (``first_touch_s_per_byte``).

Smaller outputs are sometimes fresh too -- weight gradients freed in bulk by
``zero_grad(set_to_none=True)`` and faulted in again after glibc trims its
heap -- but how much depends on the allocation history (``docs/accuracy.md``,
"Calibration"), so it is not modelled.  On GPU the caching allocator
reuses device memory: nothing to measure.
"""
from __future__ import annotations

import platform

from .devices import Context
from .tasks import Probe

GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20  # bytes, 64-bit glibc


def first_touch_from(t_reused: float, t_fresh: float, nbytes: int) -> dict:
    """``allocation``: ``first_touch_s_per_byte = max(t_fresh - t_reused, 0) / nbytes``, and the libc."""
    libc, version = platform.libc_ver()
    out = {"first_touch_s_per_byte": max(t_fresh - t_reused, 0.0) / nbytes,
           "measured_bytes": nbytes, "libc": f"{libc} {version}".strip()}
    if libc == "glibc":
        out["always_fresh_bytes"] = GLIBC_MMAP_THRESHOLD_MAX
    return out


def _callables(numel: int) -> dict:
    import torch
    reused = torch.empty(numel)
    reused.fill_(0.0)
    return {"reused": lambda: reused.fill_(1.0), "fresh": lambda: torch.empty(numel).fill_(1.0)}


def probes(ctx: Context) -> list[Probe]:
    if ctx.kind != "cpu":
        return []
    numel = ctx.plan.first_touch_bytes // 4
    return [Probe("allocation", "first-touch cost", lambda: _callables(numel),
                  lambda t: first_touch_from(t["reused"].seconds, t["fresh"].seconds, numel * 4))]
