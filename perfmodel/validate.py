"""Proof against measured training steps: predicted vs measured time per step.

For each width, the package's real ``torch.nn.Module`` of the model
(:func:`perfmodel.torchmodels.build_module`) runs full training steps --
forward, loss, backward, optimizer step, ``zero_grad(set_to_none=True)`` --
after warm-up; the median over the repeats is compared with
:func:`perfmodel.predict.predict` for the same configuration::

    error = (predicted - measured) / measured        MAPE = mean |error|

Timing uses :func:`perfmodel.calibrate.timing.measure` (CUDA events + synchronize on a
GPU).  The statistic over repeats (median, or min) and, on a CPU, the thread
count and clock default to the ones the profile was calibrated with
(``calibration.provenance.stat`` / ``.threads`` / ``.clock``), so prediction
and measurement describe the same execution.  A configuration that
runs out of memory is reported as "does not fit" instead of failing the run.

:func:`validate_configs` takes ``(width, knobs)`` pairs, each row keeping its own knobs
(``perfmodel validate --sample``: :mod:`perfmodel.validate_sample`).  CUDA goes through
:mod:`perfmodel.calibrate.backend` (``torch.cuda``, or the fake CPU stand-in of the tests).

``rounds`` > 1 repeats the whole pass over the widths (a fresh module each
time): a width's measured time is the median over rounds, and the MAPE of
each round alone is reported too, so the run-to-run noise of the machine is
visible next to the model's error.

``fresh_process`` times each (round, width) in a new Python process, as a
training job runs one model from a fresh start.  It matters on a CPU: glibc's
``malloc`` adapts its mmap and trim thresholds to what the process freed
before, so after a wide model a narrow one reuses heap pages instead of
faulting fresh ones in.  The CLI defaults to fresh processes.

Short steps are warmed up and timed by duration as well as by count: at least ``warmup``
steps and ``STEP_WARMUP_S`` seconds of warm-up, and each of the ``repeats`` samples a block of
steps lasting ``STEP_BLOCK_S`` (one step when a step is longer): a fresh process runs its first
steps slower, so a count-only warm-up bills short steps too slow.

On a CPU each row also reports the bytes a step faulted in (minor page faults
x page size, median over the timed steps) next to the bytes the model prices
as faulted in, so a gap left by the allocator is visible: the model prices
fresh pages only for outputs of 32 MiB or more,
while glibc sometimes hands smaller buffers back to the kernel between steps.

Next to each configuration's steps a speed probe (:class:`perfmodel.calibrate.drift.SpeedProbe`,
on by default) re-times a few of the profile's own calibration points before each timed block, in
the same process; each row then also carries the error of the prediction re-priced at that speed
(:func:`perfmodel.calibrate.drift.speed_adjusted_seconds`): the model's error with the machine's
drift since calibration taken out, an attribution next to the plain error, not a replacement.

The measurements behind these choices (fresh processes, warm-up by duration, the page faults
of an MLP step, run-to-run noise) are in ``docs/accuracy.md``, "Validation".
"""
from __future__ import annotations

import gc
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from statistics import median

from .calibrate import backend
from .calibrate.drift import speed_adjusted_seconds
from .calibrate.interleave import SPREAD_LIMIT
from .errors import PerfmodelError
from .hardware import HardwareProfile
from .predict import predict
from .validate_rows import Validation, ValidationRow  # noqa: F401 -- ValidationRow re-exported

#: optimizer name -> the torch.optim class and settings a validated step runs
TORCH_OPTIMIZERS = {"sgd": ("SGD", {"momentum": 0.0}), "momentum": ("SGD", {"momentum": 0.9}), "adam": ("Adam", {})}
VALIDATE_DTYPES = ("fp32", "tf32")
LEARNING_RATE = 1e-4  # small: random data must not drive weights to inf/denormals mid-measurement


#: warm-up of at least this long (besides ``warmup`` steps), and timed blocks of steps at least
#: this long: short steps are measured in the steady state a long training run is in
STEP_WARMUP_S = 0.25
STEP_BLOCK_S = 0.02
#: a timing whose samples spread more than this ((p90 - p10) / median, the calibration's noise-guard limit,
#: ``perfmodel.calibrate.interleave.SPREAD_LIMIT``) is timed again after the pass, at most ``MAX_RETIMES`` times;
#: the least spread timing is kept
MAX_RETIMES = 2


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA OOM, or a CPU allocation failure."""
    if isinstance(e, MemoryError):
        return True
    try:
        import torch
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def execution_defaults(hw: HardwareProfile, device: str) -> tuple[int | None, str, str]:
    """``(threads, clock, stat)`` the profile was calibrated with on this device kind.

    Defaults without a matching calibration: torch's threads, wall clock, median.
    """
    prov = (hw.calibration or {}).get("provenance", {})
    stat = prov.get("stat", "median")
    if device == "cpu" and prov.get("kind") == "cpu":
        return prov.get("threads"), prov.get("clock", "wall"), stat
    return None, "wall", stat if prov.get("kind") == "gpu" else "median"


def _precision(dtype: str, device: str):
    import torch
    if dtype not in VALIDATE_DTYPES:
        raise PerfmodelError(f"dtype {dtype!r} is not allowed for validate; allowed: {', '.join(VALIDATE_DTYPES)}")
    if dtype == "tf32" and not device.startswith("cuda"):
        raise PerfmodelError("dtype 'tf32' needs a CUDA device")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype == "tf32"


@dataclass(frozen=True)
class StepTiming:
    seconds: float
    spread: float
    fresh_bytes: float | None = None  # CPU only: median bytes faulted in per timed step
    speed: dict | None = None         # SpeedProbe.ratios(): time now / calibrated per sentinel group


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (pages the kernel mapped and zeroed); None off Unix."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _page_bytes() -> int:
    import resource
    return resource.getpagesize()


def time_training_step(model: str, width: int, device: str = "cpu", warmup: int = 2, repeats: int = 5,
                       clock: str = "wall", optimizer: str = "sgd", stat: str = "median",
                       sentinels: list | None = None, **knobs) -> StepTiming:
    """Time of one full training step of the torch module, and on a CPU the bytes it faults in.

    With ``sentinels`` (:func:`perfmodel.calibrate.drift.sentinel_points` of the profile), a
    :class:`~perfmodel.calibrate.drift.SpeedProbe` samples the machine's speed before each timed
    block, then one untimed step refills the caches, and ``StepTiming.speed`` holds its ratios.

    The page faults of each timed step are counted (``getrusage`` minor faults): memory the
    allocator took fresh from the kernel that step, which the cost model prices only for
    outputs of ``calibration.allocation.always_fresh_bytes`` or more (see ``perfmodel.calibrate.allocation``).
    """
    import torch

    from .calibrate.drift import SpeedProbe
    from .calibrate.timing import measure
    from .torchmodels import build_module
    if optimizer not in TORCH_OPTIMIZERS:
        raise PerfmodelError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(TORCH_OPTIMIZERS)}")
    place = backend.place(device)
    probe = SpeedProbe(sentinels, device, clock) if sentinels else None   # its buffers first: see SpeedProbe
    module = build_module(model, width, **knobs).to(place).train()
    params = list(module.parameters())
    cls, settings = TORCH_OPTIMIZERS[optimizer]
    opt = getattr(torch.optim, cls)(params, lr=LEARNING_RATE, **settings)
    gen = torch.Generator(device=place).manual_seed(0)
    inputs, targets = module.example_batch(place, generator=gen)
    count = device == "cpu" and _minor_faults() is not None
    faults: list[int] = []

    def run():
        opt.zero_grad(set_to_none=True)
        module.loss(inputs, targets).backward()
        opt.step()

    def step():
        f0 = _minor_faults() if count else 0
        run()
        if count:
            faults.append(_minor_faults() - f0)

    def between():
        probe.sample()
        run()

    try:
        t = measure(step, device, warmup=warmup, repeats=repeats, min_block_s=STEP_BLOCK_S, clock=clock, stat=stat,
                    min_warmup_s=STEP_WARMUP_S, between=between if probe else None)
        timed = faults[-t.number * len(t.samples):] if count else []
        fresh = float(median(timed)) * _page_bytes() if timed else None
        return StepTiming(t.seconds, t.spread, fresh, probe.ratios() if probe else None)
    finally:
        module = opt = params = inputs = targets = None   # drop them (``step`` shares them) before collecting
        gc.collect()
        if device.startswith("cuda"):
            backend.get().empty_cache()


def _step_in_child(threads: int | None, dtype: str, args: tuple, knobs: dict, sentinels=None) -> StepTiming:
    """Runs in a fresh process: same threads and precision as the parent, then one timing."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    _precision(dtype, args[2])
    return time_training_step(*args, sentinels=sentinels, **knobs)


def _time_in_fresh_process(threads, dtype, args, knobs, sentinels=None) -> StepTiming:
    import multiprocessing
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_step_in_child, threads, dtype, args, knobs, sentinels).result()


def validate(model: str, widths, hw: HardwareProfile, device: str = "cpu", warmup: int = 2, repeats: int = 5,
             threads: int | None = None, clock: str | None = None, dtype: str = "fp32", optimizer: str = "sgd",
             progress: bool = True, stat: str | None = None, rounds: int = 1, fresh_process: bool = False,
             speed_probe: bool = True, retime: bool = True, **knobs) -> Validation:
    """Measure and predict ``model`` at each width, with the same knobs; see the module docstring."""
    return validate_configs(model, [(w, dict(knobs)) for w in widths], hw, device, warmup, repeats, threads, clock,
                            dtype, optimizer, progress, stat, rounds, fresh_process, shared_knobs=dict(knobs),
                            speed_probe=speed_probe, retime=retime)


def validate_configs(model: str, configs, hw: HardwareProfile, device: str = "cpu", warmup: int = 2,
                     repeats: int = 5, threads: int | None = None, clock: str | None = None, dtype: str = "fp32",
                     optimizer: str = "sgd", progress: bool = True, stat: str | None = None, rounds: int = 1,
                     fresh_process: bool = False, shared_knobs: dict | None = None,
                     speed_probe: bool = True, retime: bool = True) -> Validation:
    """Measure and predict ``model`` at each ``(width, knobs)`` of ``configs``.  Rows carry their own
    knobs unless ``shared_knobs`` (the knobs every configuration has) is given."""
    import torch
    if device.startswith("cuda") and not backend.get().is_available():
        raise PerfmodelError("--device cuda needs a CUDA GPU, none found (torch.cuda.is_available() is False); "
                             "use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise PerfmodelError(f"device {device!r} is not allowed; allowed: cpu, cuda, cuda:N")
    kind = "cpu" if device == "cpu" else "gpu"
    if hw.kind != kind:  # a GPU's prediction against CPU timings (or the reverse) measures nothing
        fix = ("pass --device cuda to time the steps on a GPU, or a CPU profile (local-cpu, cpu-generic)"
               if kind == "cpu" else "pass a GPU profile (local-gpu or a shipped GPU's)")
        raise PerfmodelError(f"profile {hw.name!r} describes a {hw.kind.upper()} but the steps run on --device "
                             f"{device}: {fix}")
    d_threads, d_clock, d_stat = execution_defaults(hw, device)
    threads = threads if threads is not None else d_threads
    clock = clock or d_clock
    stat = stat or d_stat
    if device == "cpu" and threads:
        torch.set_num_threads(threads)
    _precision(dtype, device)
    configs = [(int(w), dict(k)) for w, k in configs]
    predictions = [predict(model, w, hw, dtype, optimizer, **k) for w, k in configs]
    if rounds < 1:
        raise PerfmodelError(f"rounds {rounds!r} is not allowed; it must be >= 1")
    from tqdm import tqdm
    drift = {"before": machine_drift(hw, device, clock, stat)}
    sentinels = speed_sentinels(hw, device) if speed_probe else None
    attempts: dict = {}   # (config, round) -> its StepTiming
    retimed = 0
    oom = set()

    def time_one(i):
        w, knobs = configs[i]
        args = (model, w, device, warmup, repeats, clock if device == "cpu" else "wall", optimizer, stat)
        try:
            return (_time_in_fresh_process(torch.get_num_threads(), dtype, args, knobs, sentinels)
                    if fresh_process else time_training_step(*args, sentinels=sentinels, **knobs))
        except BrokenProcessPool:   # the worker was killed, e.g. by the kernel's OOM killer
            oom.add(i)
        except Exception as e:  # noqa: BLE001 -- only out-of-memory is swallowed
            if not is_out_of_memory(e):
                raise
            oom.add(i)
        return None

    with tqdm(total=rounds * len(configs), desc=f"validate {model}", unit="config", disable=not progress,
              leave=False) as bar:
        for r in range(rounds):
            for i in range(len(configs)):
                bar.update()
                t = None if i in oom else time_one(i)
                if t is not None:
                    attempts[i, r] = t
        for _ in range(MAX_RETIMES if retime else 0):   # unsteady timings again, after the pass
            unsteady = [key for key, t in attempts.items() if t.spread > SPREAD_LIMIT and key[0] not in oom]
            if not unsteady:
                break
            bar.total += len(unsteady)
            for key in unsteady:
                bar.update()
                retimed += 1
                t = time_one(key[0])
                if t is not None and t.spread < attempts[key].spread:
                    attempts[key] = t
    timed = [[attempts[i, r].seconds for r in range(rounds) if (i, r) in attempts] for i in range(len(configs))]
    spreads = [[attempts[i, r].spread for r in range(rounds) if (i, r) in attempts] for i in range(len(configs))]
    fresh = [[attempts[i, r].fresh_bytes for r in range(rounds)
              if (i, r) in attempts and attempts[i, r].fresh_bytes is not None] for i in range(len(configs))]
    speeds = [[attempts[i, r].speed for r in range(rounds) if (i, r) in attempts and attempts[i, r].speed]
              for i in range(len(configs))]
    drift["after"] = machine_drift(hw, device, clock, stat)
    alloc = (hw.calibration or {}).get("allocation", {}) if device == "cpu" else {}
    rows = []
    for i, ((w, knobs), p) in enumerate(zip(configs, predictions, strict=True)):
        own = {} if shared_knobs is not None else knobs
        if not timed[i]:   # out of memory on its first try (one on a re-try keeps the timing it had)
            rows.append(ValidationRow(w, float(p.time_per_step_s), None, None, "does not fit", knobs=own))
            continue
        speed = {g: median(s[g] for s in speeds[i]) for g in speeds[i][0]} if speeds[i] else None
        rows.append(ValidationRow(w, float(p.time_per_step_s), median(timed[i]), round(max(spreads[i]), 4),
                                  rounds_s=tuple(timed[i]), fresh_bytes=median(fresh[i]) if fresh[i] else None,
                                  predicted_fresh_bytes=getattr(p, "fresh_bytes_per_step", None)
                                  if device == "cpu" else None, knobs=own,
                                  first_touch_s_per_byte=alloc.get("first_touch_cold_s_per_byte" if getattr(
                                      p, "cold_pages", False) else "first_touch_s_per_byte"),
                                  speed=speed, speed_adjusted_predicted_s=None if speed is None else
                                  speed_adjusted_seconds(p.breakdown, speed, sentinels)))
    return Validation(model, hw.name, device, torch.get_num_threads() if device == "cpu" else None,
                      clock if device == "cpu" else "cuda_events", stat, dict(shared_knobs or {}), rows,
                      fresh_process, drift if drift["before"] is not None else None, retimed)


def speed_sentinels(hw: HardwareProfile, device: str) -> list | None:
    """The profile's points a :class:`~perfmodel.calibrate.drift.SpeedProbe` re-times next to each step, when
    it was calibrated on this kind of device; None otherwise."""
    if not hw.calibration or (hw.kind == "cpu") != (device == "cpu"):
        return None
    from .calibrate.drift import sentinel_points
    return sentinel_points(hw.calibration) or None


def machine_drift(hw: HardwareProfile, device: str, clock: str, stat: str) -> dict | None:
    """``perfmodel.calibrate.drift.measure_drift`` on ``hw``'s calibration, when it was calibrated on this kind of
    device (a GPU profile's points say nothing about a CPU run, nor a CPU's about a GPU)."""
    if not hw.calibration or (hw.kind == "cpu") != (device == "cpu"):
        return None
    from .calibrate.drift import measure_drift
    return measure_drift(hw.calibration, device, clock if device == "cpu" else "wall", stat)
