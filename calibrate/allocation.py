"""Fresh-allocation cost: an output written to pages the OS must first map and zero.

On CPU, PyTorch allocates with glibc ``malloc``: a request at or above the
mmap threshold gets fresh pages from the kernel, and every page is faulted in
(and zeroed) on first write.  The threshold adapts to the sizes a program
frees but never exceeds ``DEFAULT_MMAP_THRESHOLD_MAX`` -- 32 MiB on 64-bit
glibc (``malloc/malloc.c``) -- so an output of 32 MiB or more is faulted in on
every training step.  Measured here: writing a freshly allocated buffer minus
writing a reused one, per byte (``first_touch_s_per_byte``).  The fresh buffer is an anonymous
``mmap`` (:func:`fresh_buffer`), what glibc hands out above the threshold, so the probe sees fresh
pages whatever the allocator's heap holds: ``torch.empty`` of the same size was once served from a
heap that earlier probes had grown and measured 0.004 ns/B (docs/accuracy.md, "Machine state").

Pages that sat freed for a while can cost more.  A virtual machine with free page reporting
(virtio-balloon, Linux ``mm/page_reporting.c``: free blocks of 2 MiB and up are reported to the
host ``PAGE_REPORTING_DELAY`` = 2 s after they are freed, and the host drops them) backs them
again on the next touch.  On the 2-core development VM a 2 GiB buffer faulted in 4 s after the
previous one was freed cost 1.1–1.2 ns/B against 0.45 right after (1 GiB and less showed no
difference; docs/accuracy.md, "Llama blocks").  The full plans measure that too
(``first_touch_cold_s_per_byte`` at ``cold_bytes``: the median of ``cold_touch_repeats`` tries,
each after ``cold_touch_idle_s`` idle, in ``setup`` because the interleaved blocks give no idle
time); :func:`perfmodel.cost.rates.cold_pages` says when a step pays it.  On bare metal the two
rates agree.

Smaller outputs are sometimes fresh too -- weight gradients freed in bulk by
``zero_grad(set_to_none=True)`` and faulted in again after glibc trims its
heap -- but how much depends on the allocation history (``docs/accuracy.md``,
"Calibration"), so it is not modelled.  On GPU the caching allocator
reuses device memory: nothing to measure.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

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


def cold_touch_from(cold_s: list[float], reused_s_per_byte: float, nbytes: int) -> dict:
    """``first_touch_cold_s_per_byte = max(median(cold_s) / nbytes - reused_s_per_byte, 0)``: a buffer of
    ``nbytes`` written fresh after its pages sat freed, less writing it reused."""
    per_byte = statistics.median(cold_s) / nbytes
    return {"first_touch_cold_s_per_byte": max(per_byte - reused_s_per_byte, 0.0), "cold_bytes": nbytes}


def cold_bytes(plan) -> int:
    """The plan's ``cold_touch_bytes``, at most an eighth of physical memory (0 when unknown)."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
    return int(min(plan.cold_touch_bytes, ram // 8)) // 4 * 4


def fresh_write(nbytes: int, value: float = 1.0) -> None:
    """Write ``nbytes`` of float32 to a new anonymous mapping, then unmap it: every page is faulted in
    (mapped and zeroed by the kernel) on its first write, as an output at or above glibc's mmap
    threshold is."""
    import mmap

    import torch
    buf = mmap.mmap(-1, nbytes)
    t = torch.frombuffer(buf, dtype=torch.float32)
    t.fill_(value)
    del t                                    # the tensor holds the buffer: release it before unmapping
    buf.close()


def time_cold_touch(nbytes: int, repeats: int, idle_s: float, clock: str) -> list[float]:
    """Seconds to write ``nbytes`` fresh, each try ``idle_s`` after an equal buffer was freed."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    out = []
    fresh_write(nbytes, 0.0)                 # faulted in once, then freed: the pages the tries reuse
    for _ in range(repeats):
        time.sleep(idle_s)
        t0 = tick()
        fresh_write(nbytes)
        out.append(tick() - t0)
    return out


def _callables(numel: int, cold: dict, ctx: Context) -> dict:
    import torch
    n_cold = cold_bytes(ctx.plan) if ctx.plan.cold_touch_repeats else 0
    if n_cold:
        cold["seconds"], cold["bytes"] = time_cold_touch(n_cold, ctx.plan.cold_touch_repeats,
                                                         ctx.plan.cold_touch_idle_s, ctx.clock), n_cold
    reused = torch.empty(numel)
    reused.fill_(0.0)
    return {"reused": lambda: reused.fill_(1.0), "fresh": lambda: fresh_write(numel * 4)}


def _combine(t: dict, numel: int, cold: dict) -> dict:
    out = first_touch_from(t["reused"].seconds, t["fresh"].seconds, numel * 4)
    if cold:
        out.update(cold_touch_from(cold["seconds"], t["reused"].seconds / (numel * 4), cold["bytes"]))
    return out


def probes(ctx: Context) -> list[Probe]:
    if ctx.kind != "cpu":
        return []
    numel, cold = ctx.plan.first_touch_bytes // 4, {}
    return [Probe("allocation", "first-touch cost", lambda: _callables(numel, cold, ctx),
                  lambda t: _combine(t, numel, cold))]
