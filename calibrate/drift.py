"""Drift: how fast this machine runs a profile's own calibration points now, against then.

On a shared machine (a cloud VM) the same kernel runs at different speeds at different
times: neighbours take DRAM bandwidth and last-level cache (measured drift:
``docs/accuracy.md``, "Machine state").  A validation error is only as good as the
machine state it was measured in, so ``perfmodel validate`` re-times a few of the
profile's points before and after its steps and reports ``now / calibrated`` per group:

==========  ===========================================================================
group       points re-timed (each with the calibration's own callable, in short timing blocks)
==========  ===========================================================================
dispatch    ``overhead_us.dispatch``: the median of four tiny ops (``perfmodel.calibrate.overhead``)
gemm        up to three near-cube points of the ``x @ W^T`` layout of the profile's first dtype,
            the ones nearest 1e6, 1e8 and 1e9 FLOPs; the group's figure is their median
copy_cache  the copy point nearest 1 MiB moved (cache-resident on a CPU)
copy_dram   the largest copy point (DRAM)
==========  ===========================================================================

A ratio above 1 means the machine is slower now than when it was calibrated.
"""
from __future__ import annotations

import math
import statistics

from .devices import matmul_precision
from .timing import measure

GEMM_TARGET_FLOPS = (1e6, 1e8, 1e9)
MAX_ASPECT = 4  # GEMM points re-timed are near-cubes (largest dim <= 4x the smallest) where the profile has them
CACHE_COPY_BYTES = 2**20
#: timing of the re-timed points: short blocks (all of them take about a second)
WARMUP, REPEATS, MIN_BLOCK_S = 2, 5, 5e-3


def sentinel_points(cal: dict) -> list[tuple[str, dict]]:
    """``(group, point)`` pairs of the profile's calibration to re-time (see the module table)."""
    out = []
    if "dispatch" in cal.get("overhead_us", {}):
        out.append(("dispatch", {"time_s": cal["overhead_us"]["dispatch"] * 1e-6}))
    gemm = cal.get("gemm", [])
    if gemm:
        dtype = gemm[0].get("dtype", "fp32")
        linear = [p for p in gemm if p.get("dtype", "fp32") == dtype and p.get("batch", 1) == 1
                  and p.get("trans_b", False) and not p.get("trans_a", False)]
        cubes = [p for p in linear if max(p["m"], p["n"], p["k"]) <= MAX_ASPECT * min(p["m"], p["n"], p["k"])]
        linear = cubes or linear
        chosen = []
        for target in GEMM_TARGET_FLOPS:
            best = min(linear, key=lambda p: abs(math.log(2 * p["m"] * p["n"] * p["k"] / target)), default=None)
            if best is not None and best not in chosen:
                chosen.append(best)
        out += [("gemm", p) for p in chosen]
    copies = [p for p in cal.get("memory", []) if p["op"] == "copy"]
    if copies:
        near = min(copies, key=lambda p: abs(math.log(p["bytes"] / CACHE_COPY_BYTES)))
        out.append(("copy_cache", near))
        largest = max(copies, key=lambda p: p["bytes"])
        if largest is not near:
            out.append(("copy_dram", largest))
    return out


def _callable(group: str, p: dict, device: str):
    from . import gemm, memory
    if group == "gemm":
        return gemm.gemm_callable(1, p["m"], p["n"], p["k"], False, True, p.get("dtype", "fp32"), device)
    if group in ("copy_cache", "copy_dram"):
        return memory.memory_callable("copy", p["bytes"] // (4 * memory.BYTES_PER_ELEMENT_MOVED["copy"]), device)
    raise ValueError(group)


def measure_drift(cal: dict, device: str = "cpu", clock: str = "wall", stat: str = "median") -> dict | None:
    """``{group: now / calibrated}`` (median over a group's points) and ``points``; None when the
    profile has none of the points above (a datasheet profile)."""
    from . import overhead
    points = sentinel_points(cal or {})
    if not points:
        return None
    timing = {"device": device, "warmup": WARMUP, "repeats": REPEATS, "min_block_s": MIN_BLOCK_S,
              "clock": clock, "stat": stat}
    rows = []
    for group, p in points:
        if group == "dispatch":
            now = overhead.dispatch_s(device, timing)
            what = "4x4 mul/add/mm/copy"
        else:
            with matmul_precision(p.get("dtype", "fp32"), device):
                now = measure(_callable(group, p, device), **timing).seconds
            what = (f"{p.get('dtype', 'fp32')} {p['m']}x{p['n']}x{p['k']}" if group == "gemm"
                    else f"copy {p['bytes']} B")
        rows.append({"group": group, "what": what, "calibrated_s": p["time_s"], "now_s": now,
                     "ratio": now / p["time_s"]})
    groups = dict.fromkeys(g for g, _ in points)
    out = {g: statistics.median(r["ratio"] for r in rows if r["group"] == g) for g in groups}
    out["points"] = rows
    return out
