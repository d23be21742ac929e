"""Run the microbenchmarks and build a calibrated profile (library side of ``perfmodel calibrate``).

The calibrated profile is the base datasheet profile with its name changed
and a ``calibration`` section added (raw points + provenance, see
:mod:`perfmodel.hardware.calibration`).  The points are timed by the noise guard
(:mod:`perfmodel.calibrate.interleave`: repeats interleaved across points, a reference point
around each group, bounded re-measurement); points that stayed unstable are named in
``provenance.unstable_points`` and warned about.  Everything is measured into memory first and
written at the end with :func:`perfmodel.calibrate.atomic.write_json_atomic`, so an
interrupted run leaves any previous profile untouched.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from perfmodel import hardware
from perfmodel.errors import PerfmodelError
from perfmodel.hardware.profile import calibration_base_dict, profile_from_dict
from perfmodel.hardware.stability import unstable_warning

from . import allocation, backend, conv, gemm, interleave, memory, overhead, provenance, rnn
from .atomic import write_json_atomic
from .devices import Context, free_cache, supported_dtypes
from .plan import CalibrationPlan
from .timing import STATS

SECTION_MODULES = {"overhead": overhead, "gemm": gemm, "memory": memory, "allocation": allocation, "rnn": rnn,
                   "conv": conv}
SECTION_KEYS = {"overhead": "overhead_us", "gemm": "gemm", "memory": "memory", "allocation": "allocation",
                "rnn": "rnn", "conv": "conv"}
#: sections whose single task returns the whole object (not a list of points)
OBJECT_SECTIONS = ("overhead", "allocation")
NO_GPU = ("--gpu needs a CUDA GPU, none found (torch.cuda.is_available() is False); use --cpu")


class NoGpuError(PerfmodelError):
    """``--gpu`` on a machine without CUDA."""


def default_output(kind: str) -> Path:
    """``user_profiles_dir()/local-cpu.json`` or ``local-gpu.json``: loadable as ``--hardware local-cpu``."""
    return hardware.user_profiles_dir() / f"{hardware.LOCAL_CPU if kind == 'cpu' else hardware.LOCAL_GPU}.json"


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def guess_gpu_base(device_name: str, names=None, fallback: str = hardware.DEFAULT_GPU) -> str:
    """The shipped GPU profile whose model token appears in ``device_name`` (longest match), else ``fallback``.

    ``"NVIDIA H100 80GB HBM3"`` -> ``H100-SXM5``; ``"Tesla V100-SXM2-16GB"`` -> ``V100-SXM2``;
    ``"NVIDIA GeForce GTX TITAN X"`` -> ``TitanX-Maxwell``.
    """
    names = hardware.available() if names is None else names
    dev = _key(device_name)
    best, best_len = None, 0
    for name in names:
        if name.lower().startswith(("cpu", "local")):
            continue
        parts = name.split("-")
        for i in range(len(parts), 0, -1):  # "A100-SXM4-80GB" tries A100SXM480GB, A100SXM4, A100
            token = _key("".join(parts[:i]))
            if token and token in dev:
                if len(token) > best_len:
                    best, best_len = name, len(token)
                break
    return best or fallback


def resolve_device(gpu: bool, device: str | None) -> tuple[str, str]:
    """``(kind, device)``; raises :class:`NoGpuError` for ``--gpu`` without CUDA."""
    import torch
    if not gpu:
        return "cpu", "cpu"
    cuda = backend.get()
    if not cuda.is_available():
        raise NoGpuError(NO_GPU)
    dev = device or "cuda:0"
    if not dev.startswith("cuda"):
        raise PerfmodelError(f"--device {dev!r} is not allowed with --gpu; use cuda or cuda:N")
    if dev == "cuda":
        dev = "cuda:0"
    idx = torch.device(dev).index or 0
    if idx >= cuda.device_count():
        raise PerfmodelError(f"--device {dev!r} is not allowed: {cuda.device_count()} CUDA device(s) "
                             f"visible (cuda:0 .. cuda:{cuda.device_count() - 1})")
    return "gpu", dev


def default_base(kind: str, device: str) -> str:
    if kind == "cpu":
        return hardware.DEFAULT_CPU
    return guess_gpu_base(backend.get().device_name(device))


def collect(points) -> dict:
    """``[(section, point)]`` -> ``{section: [points...]}`` (object sections: their dict)."""
    results: dict = {}
    for section, pt in points:
        if section in OBJECT_SECTIONS:
            results[section] = pt
        else:
            results.setdefault(section, []).extend(pt if isinstance(pt, list) else [pt])
    return results


def calibrate(base: hardware.HardwareProfile, plan: CalibrationPlan, kind: str = "cpu", device: str = "cpu",
              name: str | None = None, command: str = "", progress: bool = True,
              threads: int | None = None, clock: str = "wall", stat: str = "median",
              timer=None) -> tuple[dict, list[str]]:
    """Measure ``plan`` on ``device``; return ``(profile dict, warnings)``.  Writes nothing.

    ``threads`` sets ``torch.set_num_threads`` for a CPU run; ``clock`` is the
    CPU clock and ``stat`` the statistic over repeats (:mod:`perfmodel.calibrate.timing`).
    All three are recorded in the provenance, and ``perfmodel validate`` reuses them.
    ``timer`` replaces the device's timer (:class:`perfmodel.calibrate.timing.FakeTimer` in tests).
    """
    import torch
    if clock not in ("wall", "cpu"):
        raise PerfmodelError(f"clock {clock!r} is not allowed; allowed: wall, cpu")
    if stat not in STATS:
        raise PerfmodelError(f"statistic {stat!r} is not allowed; allowed: {', '.join(STATS)}")
    if threads is not None and kind == "cpu":
        torch.set_num_threads(threads)
    if base.kind != kind:
        raise PerfmodelError(f"--base {base.name!r} is a {base.kind} profile; a {kind} calibration needs a "
                             f"{kind} profile")
    nvml = None
    if kind == "gpu":
        cuda = backend.get()
        nvml = cuda.nvml(device)
        cuda.set_device(device)
        prov = provenance.gpu_provenance(command, device, nvml)
    else:
        prov = provenance.cpu_provenance(command)
    dtypes = plan.dtypes or tuple(base.peak_tflops)
    dtypes = supported_dtypes(dtypes, device,
                              lambda dt: gemm.gemm_callable(1, 16, 16, 16, False, True, dt, device)())
    prov["dtypes"] = list(dtypes)
    prov["plan"] = plan.name
    prov["base_profile"] = base.name
    prov["clock"] = clock if kind == "cpu" else "cuda_events"
    prov["stat"] = stat
    ctx = Context(device, kind, dtypes, plan, clock if kind == "cpu" else "wall", stat)
    probes = [p for s in plan.sections for p in SECTION_MODULES[s].probes(ctx)]
    t0 = time.perf_counter()
    outcome = interleave.run_probes(probes, ctx, timer, progress)
    results = collect(outcome.points)
    free_cache(device)
    prov["wall_time_s"] = round(time.perf_counter() - t0, 1)
    prov["section_wall_s"] = {k: round(v, 1) for k, v in outcome.seconds.items()}
    prov.update(outcome.provenance())
    warnings = provenance.finish(prov, nvml)
    cal = {"provenance": prov}
    for section in plan.sections:
        if section in results:
            cal[SECTION_KEYS[section]] = results[section]
    prof = calibration_base_dict(base)
    prof["name"] = name or (hardware.LOCAL_CPU if kind == "cpu" else hardware.LOCAL_GPU)
    prof["description"] = f"{prov['device']} calibrated {prov['date']} ({plan.name} plan) on base {base.name}"
    prof["calibration"] = cal
    unstable = unstable_warning(prof)
    return prof, warnings + ([unstable] if unstable else [])


def write_profile(prof: dict, path) -> Path:
    """Check ``prof`` loads as a profile, then write it atomically."""
    path = Path(path)
    profile_from_dict(prof, str(path))
    return write_json_atomic(path, prof)
