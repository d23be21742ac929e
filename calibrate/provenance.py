"""What was measured, where, with what: the ``calibration.provenance`` object.

CPU: model name, cores, torch threads, MKL and oneDNN versions, load average.
GPU (through :mod:`perfmodel.calibrate.backend`): name, capability, driver, CUDA/cuDNN versions, and through NVML
(pynvml)
SM/memory clocks, power limit and temperature -- sampled before and after the
run so thermal or power throttling can be flagged.  NVML is optional: when the
module is missing or fails, the provenance says so and calibration goes on.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re

from . import backend
from .backend import Nvml

THROTTLE_DROP = 0.10  # warn when the SM clock fell by more than 10 % during the run


def _torch_config_version(pattern: str) -> str | None:
    import torch
    m = re.search(pattern, torch.__config__.show())
    return m.group(1) if m else None


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def common(command: str) -> dict:
    import torch
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "source": "microbenchmark"}


def cpu_provenance(command: str) -> dict:
    import torch
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**common(command), "device": cpu_model_name(), "kind": "cpu",
            "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkl": _torch_config_version(r"Math Kernel Library Version ([\w.\-]+)"),
            "onednn": _torch_config_version(r"(?:MKL-DNN|oneDNN) v([\w.\-]+)"),
            "capability": _torch_config_version(r"CPU capability usage: (\w+)"),
            "malloc_tunables": os.environ.get("GLIBC_TUNABLES"),
            "load_average_start": list(load) if load else None}


def gpu_provenance(command: str, device: str, nvml: Nvml) -> dict:
    """Name, capability, SMs, memory, CUDA and cuDNN versions (:func:`perfmodel.calibrate.backend.get`),
    NVML's readings."""
    cuda = backend.get()
    idx = backend.device_index(device)
    return {**common(command), "device": cuda.device_name(idx), "kind": "gpu", "device_index": idx,
            **cuda.properties(idx), **cuda.versions(), **nvml.static(), "clocks_start": nvml.sample()}


def throttle_warning(start: dict, end: dict) -> str | None:
    """A warning line when the SM clock dropped more than ``THROTTLE_DROP`` between samples."""
    a, b = (start or {}).get("sm_clock_MHz"), (end or {}).get("sm_clock_MHz")
    if not a or b is None or b >= a * (1 - THROTTLE_DROP):
        return None
    return (f"warning: SM clock fell from {a} MHz to {b} MHz during calibration "
            f"({100 * (1 - b / a):.0f}% drop): the GPU throttled (power or temperature); "
            "the measured tables may be pessimistic")


def finish(prov: dict, nvml: Nvml | None = None) -> list[str]:
    """Record end-of-run readings; return warnings to print."""
    warnings = []
    if prov.get("kind") == "gpu" and nvml is not None:
        prov["clocks_end"] = nvml.sample()
        w = throttle_warning(prov.get("clocks_start"), prov["clocks_end"])
        if w:
            prov["throttled"] = True
            warnings.append(w)
    if hasattr(os, "getloadavg"):
        prov["load_average_end"] = list(os.getloadavg())
        if prov.get("kind") == "cpu" and prov["load_average_end"][0] > (prov.get("threads") or 1) + 0.5:
            warnings.append(f"warning: load average {prov['load_average_end'][0]:.1f} exceeds the "
                            f"{prov.get('threads')} threads measured with: other processes shared the CPU")
    return warnings
