"""Noise guard: calibration probes timed interleaved, checked for stability, re-measured when unstable.

The probes (:class:`perfmodel.calibrate.tasks.Probe`) run in groups of up to ``GROUP_SIZE`` consecutive probes
of one section.  For each group:

1. every probe's callables are built and warmed up, and the calls per timed block fixed
   (:func:`perfmodel.calibrate.timing.warm_up`, :func:`~perfmodel.calibrate.timing.calls_per_block`);
2. the reference point -- an fp32 GEMM of ``REF_SIZE`` (``REF_SIZE_DEVICE`` on a GPU) cubed, the median
   of ``REF_REPEATS`` blocks of at least ``REF_BLOCK_S`` -- is timed;
3. the samples are taken in rounds: round ``r`` times one block of every callable of the group that
   needs an ``r``-th sample.  A burst of load shorter than a round therefore lands on one sample of
   several points, not on every sample of one.  The other points' blocks evict a point's operands
   from the caches; refilling them costs about (operand bytes) / (memory bandwidth), at most
   (last-level cache) / (memory bandwidth), a few milliseconds: large against a short call, small
   against a long one.  So a callable whose call takes under ``PRECALL_MAX_S`` gets one untimed call
   before each block, which then starts in the state of back-to-back calls;
4. the reference point is timed again.

Stability.  A timing of one callable is *stable* when

    spread = (p90 - p10) / median over its samples   <=  SPREAD_LIMIT = 0.25

and the slower of its group's two reference times is at most ``LOAD_LIMIT = 1.25`` times the typical
(median) reference time of the whole run (:func:`typical_reference`); a probe is stable when each of
its callables has a stable timing. Why 0.25: the median then lies within 25 % of the fastest decile
(median - p10 <= p90 - p10), so a point is stored to about the accuracy the model is validated to (a
MAPE of 10-20 %), while undisturbed repeats of a block of at least ``min_block_s`` agree to a few
percent (the tables smooth at that level, ``perfmodel.cost.rates``); a core shared with another
process moves samples by factors (2x for an op whose thread waits for a descheduled partner, far
more when it is descheduled itself). ``LOAD_LIMIT`` applies the same 25 % to the machine's speed
around the group: it catches a load that lasts the whole group and so leaves the spreads small.

Re-measurement.  After a pass over all groups, the callables with no stable timing are timed again,
from a fresh setup of their probes, in groups of their own, at most ``MAX_REMEASURES`` times (later
passes come after the first has finished, so a burst has had time to pass), and in all for at most
``REMEASURE_BUDGET`` times as long as the first pass took (no group starts after that): on a machine
busy throughout, nearly every point is unstable and more passes would only repeat the first.  Each
callable keeps its
first stable timing, else its timing least over the limits,
``max(spread / SPREAD_LIMIT, (reference / typical reference) / LOAD_LIMIT)``; probes left with an
unstable callable are reported by label (``calibration.provenance.unstable_points``).
"""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

from . import gemm
from .backend import place
from .devices import Context, matmul_precision
from .tasks import Probe
from .timing import Timer, Timing, block_timer, calls_per_block, warm_up

GROUP_SIZE = 16
SPREAD_LIMIT = 0.25
LOAD_LIMIT = 1.25
MAX_REMEASURES = 2
REMEASURE_BUDGET = 1.0
REF_SIZE, REF_SIZE_DEVICE = 128, 1024
REF_REPEATS, REF_BLOCK_S = 3, 2e-3   # the reference is the median of 3 blocks of >= 2 ms
MAX_NUMBER = 10_000
PRECALL_MAX_S = 10e-3


def typical_reference(references) -> float:
    """The run's typical reference time: the median of every reference timing so far (1.0 if none).

    Not the fastest: one fast outlier (a warm cache, a clock burst) would make every other group
    look loaded (docs/accuracy.md, "Noise guard")."""
    return statistics.median(references) if references else 1.0


def excess(t: Timing, reference_s: float, best_reference_s: float) -> float:
    """``max(spread / SPREAD_LIMIT, (reference / best) / LOAD_LIMIT)``: the timing is stable when <= 1."""
    ratio = reference_s / best_reference_s if best_reference_s > 0 else 1.0
    return max(t.spread / SPREAD_LIMIT, ratio / LOAD_LIMIT)


@dataclass
class Outcome:
    points: list                           # (section, combined point) per probe not rejected, in order
    seconds: dict                          # section -> wall seconds
    unstable: list = field(default_factory=list)   # labels of probes left with an unstable callable
    probes: int = 0                         # probes timed (rejected ones excluded)
    remeasured: int = 0                     # probes timed more than once
    budget_spent: bool = False              # re-measuring stopped at REMEASURE_BUDGET
    reference_s: list = field(default_factory=list)  # every reference time, in order

    def provenance(self) -> dict:
        """``unstable_points`` (count, names) and ``noise_guard`` (limits, re-measured probes,
        the slowest reference time over the fastest) for ``calibration.provenance``."""
        best = min(self.reference_s, default=0.0)
        return {"unstable_points": {"count": len(self.unstable), "names": list(self.unstable)},
                "noise_guard": {"points": self.probes, "spread_limit": SPREAD_LIMIT, "load_limit": LOAD_LIMIT,
                                "max_remeasures": MAX_REMEASURES, "remeasured_points": self.remeasured,
                                "remeasure_budget_spent": self.budget_spent,
                                "reference_worst_ratio": round(max(self.reference_s) / best, 3) if best else None}}


@dataclass
class _Series:
    probe: int
    name: str
    fn: object
    number: int
    repeats: int
    dtype: str | None
    precall: bool
    samples: list = field(default_factory=list)


class _Runner:
    def __init__(self, probes: list[Probe], ctx: Context, timer: Timer):
        self.probes, self.ctx, self.timer = probes, ctx, timer
        self.references: list[float] = []
        n = REF_SIZE if place(ctx.device) == "cpu" else REF_SIZE_DEVICE
        self.ref = gemm.gemm_callable(1, n, n, n, False, True, "fp32", ctx.device)
        with self._precision("fp32"):
            self.ref_number = calls_per_block(warm_up(timer, self.ref, ctx.plan.warmup), REF_BLOCK_S)

    def _precision(self, dtype):
        return matmul_precision(dtype, self.ctx.device) if dtype else nullcontext()

    def reference(self) -> float:
        with self._precision("fp32"):
            t = statistics.median(self.timer.block(self.ref, self.ref_number) / self.ref_number
                                  for _ in range(REF_REPEATS))
        self.references.append(t)
        return t

    def _series(self, i: int, names) -> list[_Series]:
        p, plan = self.probes[i], self.ctx.plan
        block = max(p.min_block_s, plan.min_block_s)
        out = []
        for name, fn in p.setup().items():
            if names is not None and name not in names:
                continue
            with self._precision(p.dtype):
                first = warm_up(self.timer, fn, plan.warmup)
            out.append(_Series(i, name, fn, calls_per_block(first, block, MAX_NUMBER),
                               max(p.min_repeats, plan.repeats, 1), p.dtype, first < PRECALL_MAX_S))
        return out

    def group(self, todo: dict) -> dict:
        """Time ``{probe index: callable names (None: all)}`` interleaved; ``{index: (timings, reference_s)}``,
        ``timings`` None where the library rejected the probe."""
        series, rejected = [], set()
        for i, names in todo.items():
            try:
                series += self._series(i, names)
            except self.probes[i].rejects:
                rejected.add(i)
        series = [s for s in series if s.probe not in rejected]
        before = self.reference()
        for r in range(max((s.repeats for s in series), default=0)):
            for s in series:
                if r < s.repeats:
                    with self._precision(s.dtype):
                        if s.precall:
                            s.fn()  # untimed: the block starts as back-to-back calls would
                        s.samples.append(self.timer.block(s.fn, s.number) / s.number)
        load = max(before, self.reference())
        return {i: (None if i in rejected else
                    {s.name: Timing.of(s.samples, s.number, self.ctx.stat) for s in series if s.probe == i}, load)
                for i in todo}


def _groups(probes: list[Probe], todo: dict):
    group: dict = {}
    for i, names in todo.items():
        if group and (len(group) == GROUP_SIZE or probes[next(iter(group))].section != probes[i].section):
            yield group
            group = {}
        group[i] = names
    if group:
        yield group


def _unsettled(tries: dict, best: float) -> dict:
    """``{probe: names of its callables with no stable timing}``, for probes that have such callables."""
    out = {}
    for i, by_name in tries.items():
        names = {n for n, ts in by_name.items() if not any(excess(t, ref, best) <= 1 for t, ref in ts)}
        if names:
            out[i] = names
    return out


_now = time.perf_counter  # the clock of the re-measurement budget and the section times


def run_probes(probes: list[Probe], ctx: Context, timer: Timer | None = None, progress: bool = True,
               desc: str = "calibrating", remeasure_budget: float = REMEASURE_BUDGET) -> Outcome:
    """Time every probe with the noise guard (module docstring); combine each into its point."""
    from tqdm import tqdm
    runner = _Runner(probes, ctx, timer or block_timer(ctx.device, ctx.clock))
    tries: dict = {}     # probe -> {callable name: [(Timing, reference_s), ...]}
    rejected: set = set()
    seconds: dict = {}
    todo: dict = {i: None for i in range(len(probes))}
    remeasured: set = set()
    spent = False
    start = _now()
    first_pass_s = 0.0   # set after the first pass, read only by later ones
    with tqdm(total=len(probes), desc=desc, unit="pt", disable=not progress, dynamic_ncols=True,
              leave=True) as bar:
        for pass_no in range(MAX_REMEASURES + 1):
            for group in _groups(probes, todo):
                if pass_no and _now() - start > (1 + remeasure_budget) * first_pass_s:
                    spent = True
                    break
                first = probes[next(iter(group))]
                bar.set_postfix_str(first.label, refresh=False)
                t0 = _now()
                for i, (timings, ref) in runner.group(group).items():
                    if timings is None:
                        rejected.add(i)
                        continue
                    for name, t in timings.items():
                        tries.setdefault(i, {}).setdefault(name, []).append((t, ref))
                seconds[first.section] = seconds.get(first.section, 0.0) + _now() - t0
                remeasured.update(group if pass_no else ())
                bar.update(len(group))
            if not pass_no:
                first_pass_s = _now() - start
            todo = _unsettled(tries, typical_reference(runner.references))
            if spent or not todo or pass_no == MAX_REMEASURES:
                break
            bar.total += len(todo)
            bar.refresh()
    best = typical_reference(runner.references)
    unsettled = _unsettled(tries, best)
    points = []
    for i, p in enumerate(probes):
        if i in rejected or i not in tries:
            continue
        chosen = {}
        for name, ts in tries[i].items():
            stable = [t for t, ref in ts if excess(t, ref, best) <= 1]
            chosen[name] = stable[0] if stable else min(ts, key=lambda x: excess(x[0], x[1], best))[0]
        pt = p.combine(chosen)
        if pt is not None:
            points.append((p.section, pt))
    unstable = [probes[i].label for i in sorted(unsettled)]
    return Outcome(points, seconds, unstable, len(probes) - len(rejected), len(remeasured), spent,
                   list(runner.references))
