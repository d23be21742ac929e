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
validation must use the same one.  The spread of the samples is
``(p90 - p10) / median`` (deciles by linear interpolation between the sorted
samples; 0 for one sample); :mod:`perfmodel.calibrate.interleave` judges stability by it.

Timers (one interface, ``block(fn, number) -> seconds`` of ``number`` back-to-back calls):
:class:`ClockTimer` (CPU clocks above), :class:`CudaEventTimer` (a device synchronize, then CUDA
events around the block, through :mod:`perfmodel.calibrate.backend`, so the fake backend runs it on a CPU)
and :class:`FakeTimer` (a simulated clock for tests).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

STATS = ("median", "min")


@dataclass(frozen=True)
class Timing:
    median_s: float
    spread: float       # (p90 - p10) / median over the samples
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

    @classmethod
    def of(cls, samples, number: int = 1, stat: str = "median") -> Timing:
        return cls(statistics.median(samples), spread_of(samples), number, tuple(samples), stat)


def spread_of(samples) -> float:
    """``(p90 - p10) / median`` of ``samples`` (0 for fewer than two, or a zero median)."""
    s = sorted(samples)
    med = statistics.median(s) if s else 0.0
    if len(s) < 2 or med <= 0:
        return 0.0
    q = statistics.quantiles(s, n=10, method="inclusive")
    return (q[-1] - q[0]) / med


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Timer(Protocol):
    def block(self, fn: Callable[[], object], number: int) -> float:
        """Seconds taken by ``number`` back-to-back calls of ``fn``."""


class ClockTimer:
    """A CPU clock (``CLOCKS[clock]``) read before and after the block."""

    def __init__(self, clock: str = "wall"):
        self.now = CLOCKS[clock]

    def block(self, fn, number):
        t0 = self.now()
        for _ in range(number):
            fn()
        return self.now() - t0


class CudaEventTimer:
    """``synchronize(device)``, an event, the calls, an event, wait for it: the events' elapsed time."""

    def __init__(self, device: str, cuda=None):
        from . import backend
        self.device, self.cuda = device, cuda or backend.get()

    def block(self, fn, number):
        start, end = self.cuda.event(), self.cuda.event()
        self.cuda.synchronize(self.device)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3


class FakeTimer:
    """A simulated clock, for tests: a block of ``number`` calls of ``fn`` (each really called) takes
    ``number x cost(fn) x load(now)`` seconds of a clock that starts at 0 and advances by the blocks
    timed; ``log`` lists ``(fn, number, start)`` for every block."""

    def __init__(self, cost: Callable[[object], float] = lambda fn: 1e-3,
                 load: Callable[[float], float] = lambda now: 1.0):
        self.cost, self.load, self.now, self.log = cost, load, 0.0, []

    def block(self, fn, number):
        for _ in range(number):
            fn()
        secs = number * self.cost(fn) * self.load(self.now)
        self.log.append((fn, number, self.now))
        self.now += secs
        return secs


def block_timer(device: str, clock: str = "wall") -> Timer:
    """CUDA events on a ``cuda`` device, else the CPU ``clock``."""
    return CudaEventTimer(device) if device.startswith("cuda") else ClockTimer(clock)


def warm_up(timer: Timer, fn, warmup: int = 1, min_warmup_s: float = 0.0) -> float:
    """Call ``fn`` ``warmup`` times (at least once) and, with ``min_warmup_s``, until that long has
    passed; return the fastest call's seconds."""
    first = spent = timer.block(fn, 1)
    calls = 1
    while calls < warmup or spent < min_warmup_s:
        t = timer.block(fn, 1)
        first, spent, calls = min(first, t), spent + t, calls + 1
    return first


def calls_per_block(call_s: float, min_block_s: float, max_number: int = 10_000) -> int:
    """Calls of ``call_s`` seconds that fill ``min_block_s``: ``min(max(1, min_block_s / call_s), max_number)``."""
    return int(min(max(1, min_block_s / max(call_s, 1e-9)), max_number))


def measure(fn: Callable[[], object], device: str = "cpu", warmup: int = 2, repeats: int = 5,
            min_block_s: float = 2e-3, max_number: int = 10_000, clock: str = "wall",
            stat: str = "median", min_warmup_s: float = 0.0, timer: Timer | None = None,
            between: Callable[[], object] | None = None) -> Timing:
    """Seconds per call of ``fn`` on ``device`` (``.seconds``: the chosen statistic).

    Warm-up runs ``warmup`` calls and, with ``min_warmup_s``, keeps calling until that long has
    passed; each of the ``repeats`` samples then times a block of calls lasting ``min_block_s``.
    ``between``, if given, is called untimed before each sample (a speed probe interleaved with
    the samples, :class:`perfmodel.calibrate.drift.SpeedProbe`).
    ``timer`` defaults to :func:`block_timer` of ``device`` and ``clock``."""
    timer = timer or block_timer(device, clock)
    number = calls_per_block(warm_up(timer, fn, warmup, min_warmup_s), min_block_s, max_number)
    samples = []
    for _ in range(max(repeats, 1)):
        if between is not None:
            between()
        samples.append(timer.block(fn, number) / number)
    return Timing.of(samples, number, stat)
