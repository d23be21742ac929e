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


#: a time-local speed sample times each sentinel point once, as one block of at least this long
SAMPLE_BLOCK_S = 5e-3


class SpeedProbe:
    """The machine's speed now, sampled between the timed blocks of another measurement.

    A validated step is timed in one short window (a fresh process, a second or two), while the
    machine's speed drifts over minutes (``docs/accuracy.md``, "Machine state"); the drift check
    before and after a whole run misses a slow minute in the middle.  This probe builds the
    callables of :func:`sentinel_points` once (so their buffers are allocated before, and freed
    after, whatever it is interleaved with) and :meth:`sample` times each as one block of at least
    ``SAMPLE_BLOCK_S``; :meth:`ratios` is the median over the samples of ``time now / calibrated``
    per group (the group's figure in one sample is the median over its points).
    """

    def __init__(self, points: list[tuple[str, dict]], device: str = "cpu", clock: str = "wall", timer=None):
        from . import overhead
        from .timing import block_timer, calls_per_block, warm_up
        self.timer = timer or block_timer(device, clock)
        self.entries = []   # (group, [(fn, number)], calibrated seconds per call)
        for group, p in points:
            fns = overhead._dispatch_fns(device) if group == "dispatch" else [_callable(group, p, device)]
            with matmul_precision(p.get("dtype", "fp32"), device):
                timed = [(fn, calls_per_block(warm_up(self.timer, fn, 2), SAMPLE_BLOCK_S)) for fn in fns]
            self.entries.append((group, timed, p["time_s"]))
        self.samples: list[dict] = []

    def sample(self) -> dict:
        """One ``{group: time now / calibrated}``, appended to ``samples``."""
        ratios: dict = {}
        for group, timed, calibrated in self.entries:
            now = statistics.median(self.timer.block(fn, n) / n for fn, n in timed)
            ratios.setdefault(group, []).append(now / calibrated)
        out = {g: statistics.median(r) for g, r in ratios.items()}
        self.samples.append(out)
        return out

    def ratios(self) -> dict | None:
        """``{group: median over the samples}``; None before the first sample."""
        if not self.samples:
            return None
        return {g: statistics.median(s[g] for s in self.samples) for g in self.samples[0]}


#: the speed group an op's time follows, by the op's bound (memory-bound ops: see :func:`speed_group`)
BOUND_GROUP = {"compute": "gemm", "overhead": "dispatch"}


def speed_group(bound: str, op_bytes: float, cache_copy_bytes: float | None, dram_copy_bytes: float | None):
    """The sentinel group whose drift an op follows: compute -> ``gemm``, overhead -> ``dispatch``,
    memory -> ``copy_cache`` or ``copy_dram``, whichever point's size is nearer the op's bytes in log
    (the geometric midpoint of 1 MiB and the largest copy decides); None for other bounds."""
    if bound != "memory":
        return BOUND_GROUP.get(bound)
    if not cache_copy_bytes or not dram_copy_bytes:
        return "copy_dram" if dram_copy_bytes else ("copy_cache" if cache_copy_bytes else None)
    mid = math.sqrt(cache_copy_bytes * dram_copy_bytes)
    return "copy_cache" if op_bytes < mid else "copy_dram"


def speed_adjusted_seconds(breakdown, ratios: dict, points: list[tuple[str, dict]]) -> float:
    """A prediction's step time had each op run at the speed the probe measured for its bound:
    ``sum_op time_s x ratios[speed_group(op)]`` (an op whose group was not sampled keeps its time).

    An attribution, not a prediction: it separates the model's error from the machine's drift
    between calibration and measurement."""
    sizes = {g: p.get("bytes") for g, p in points if g in ("copy_cache", "copy_dram")}
    total = 0.0
    for b in breakdown:   # time_s and bytes are the op's whole share of the step (all its repeats)
        g = speed_group(b.bound, b.bytes / max(b.repeat, 1), sizes.get("copy_cache"), sizes.get("copy_dram"))
        total += float(b.time_s) * ratios.get(g, 1.0)
    return total
