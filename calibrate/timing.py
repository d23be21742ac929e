"""Timing one callable: warm-up, blocks of back-to-back calls, repeats, median and spread.

Follows nanoGPT's ``bench.py`` (warm-up, then timed steps bracketed by device
synchronization), with repetition: each sample times a block of ``number``
calls (enough to last ``min_block_s``, so a 2-microsecond op is not timed
alone), and the result is the median per-call time over ``repeats`` samples.
On a CUDA device each block is bracketed by CUDA events and synchronized.

CPU clocks: ``"wall"`` (``time.perf_counter``, the default) or ``"cpu"``
(``time.process_time``: CPU seconds of this process, all threads).  On a
machine shared with other jobs, a single-threaded run timed by the ``cpu``
clock reads what the op would take on an idle core: time the process spends
descheduled is not counted.  (With several threads, OpenMP threads spinning at
a barrier while a partner is descheduled would be counted, so use ``cpu`` with
one thread.)  ``perfmodel validate`` uses the clock, thread count and
statistic the profile was calibrated with.

Statistic: the median over repeats (default) or the minimum.  Interference
from other processes only ever adds time, so on a busy machine the minimum
is the better estimate of the undisturbed time; either way calibration and
validation must use the same one.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


STATS = ("median", "min")


@dataclass(frozen=True)
class Timing:
    median_s: float
    spread: float       # interquartile range / median (max-min / median below 4 samples)
    number: int         # calls per sample
    samples: tuple
    stat: str = "median"

    @property
    def min_s(self) -> float:
        return min(self.samples)

    @property
    def seconds(self) -> float:
        """The statistic asked for: the median, or the minimum (the least-disturbed sample)."""
        return self.min_s if self.stat == "min" else self.median_s


def spread_of(samples) -> float:
    s = sorted(samples)
    med = statistics.median(s)
    if len(s) >= 4:
        q = statistics.quantiles(s, n=4)
        return (q[2] - q[0]) / med
    return (s[-1] - s[0]) / med if len(s) > 1 else 0.0


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _block_timer(device: str, clock: str = "wall"):
    """``run(fn, number) -> seconds`` for one block on ``device``."""
    if device.startswith("cuda"):
        import torch

        def run(fn, number):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            for _ in range(number):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3
        return run

    now = CLOCKS[clock]

    def run(fn, number):
        t0 = now()
        for _ in range(number):
            fn()
        return now() - t0
    return run


def measure(fn: Callable[[], object], device: str = "cpu", warmup: int = 2, repeats: int = 5,
            min_block_s: float = 2e-3, max_number: int = 10_000, clock: str = "wall",
            stat: str = "median", min_warmup_s: float = 0.0) -> Timing:
    """Seconds per call of ``fn`` on ``device`` (``.seconds``: the chosen statistic).

    Warm-up runs ``warmup`` calls and, with ``min_warmup_s``, keeps calling until that long has
    passed; each of the ``repeats`` samples then times a block of calls lasting ``min_block_s``."""
    run = _block_timer(device, clock)
    first = spent = run(fn, 1)  # also the first warm-up call
    calls = 1
    while calls < warmup or spent < min_warmup_s:
        t = run(fn, 1)
        first, spent, calls = min(first, t), spent + t, calls + 1
    number = int(min(max(1, min_block_s / max(first, 1e-9)), max_number))
    samples = tuple(run(fn, number) / number for _ in range(max(repeats, 1)))
    return Timing(statistics.median(samples), spread_of(samples), number, samples, stat)
