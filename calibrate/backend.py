"""The CUDA runtime that calibration and validation talk to: ``torch.cuda`` with NVML, or a CPU stand-in.

Every CUDA call of :mod:`calibrate` and :mod:`perfmodel.validate` goes through :func:`get`:

* :class:`TorchCuda` (the default): ``torch.cuda`` for availability, device properties,
  ``Event(enable_timing=True)``, ``synchronize`` and ``empty_cache``; ``pynvml`` for clocks,
  power and temperature (:class:`Nvml`).  Tensors live on the device named (``cuda:N``).
* :class:`FakeCuda`, when the environment sets ``PERFMODEL_CUDA_BACKEND=fake``: one fake GPU whose
  tensors live on the CPU, whose events read ``time.perf_counter`` and whose NVML readings are
  fixed.  The CUDA code paths (``calibrate --gpu``, ``validate --device cuda``, ``tools/gpu_check.py``)
  then run on a machine without a GPU, in the test suite; processes that validate spawns inherit
  the variable, so they use the same backend.

Code that creates tensors places them with :func:`place` (``cuda:0`` stays ``cuda:0`` on a real
GPU, becomes ``cpu`` on the fake one); everything else keeps the logical device string.
"""
from __future__ import annotations

import os
import time

ENV = "PERFMODEL_CUDA_BACKEND"
BACKENDS = ("torch", "fake")


class Nvml:
    """Thin, failure-tolerant wrapper of ``pynvml``: every reading is ``None`` when NVML is unusable."""

    def __init__(self, index: int):
        self.handle, self.error = None, None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as e:  # ImportError, NVMLError, driver/library mismatch ...
            self.error = f"{type(e).__name__}: {e}".strip()

    @property
    def ok(self) -> bool:
        return self.handle is not None

    def _read(self, fn, *args):
        if not self.ok:
            return None
        try:
            return fn(self.handle, *args)
        except Exception:
            return None

    def static(self) -> dict:
        if not self.ok:
            return {"nvml": f"unavailable ({self.error})"}
        nv = self.nv
        limit = self._read(nv.nvmlDeviceGetPowerManagementLimit)
        driver = None
        try:
            driver = nv.nvmlSystemGetDriverVersion()
        except Exception:
            pass
        return {"nvml": "ok", "driver": driver.decode() if isinstance(driver, bytes) else driver,
                "power_limit_W": None if limit is None else limit / 1000,
                "max_sm_clock_MHz": self._read(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
                "max_mem_clock_MHz": self._read(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM)}

    def sample(self) -> dict:
        if not self.ok:
            return {}
        nv = self.nv
        return {"sm_clock_MHz": self._read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
                "mem_clock_MHz": self._read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM),
                "temperature_C": self._read(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
                "power_W": (lambda p: None if p is None else p / 1000)(self._read(nv.nvmlDeviceGetPowerUsage)),
                "throttle_reasons": self._read(nv.nvmlDeviceGetCurrentClocksThrottleReasons)}


def device_index(device) -> int:
    """``cuda:1`` -> 1, ``cuda`` -> 0, an int stays itself."""
    if isinstance(device, int):
        return device
    import torch
    return torch.device(device).index or 0


class TorchCuda:
    """``torch.cuda`` and NVML, as used by calibration and validation."""

    fake = False

    def __init__(self):
        import torch
        self.torch, self.cuda = torch, torch.cuda

    def is_available(self) -> bool:
        return self.cuda.is_available()

    def device_count(self) -> int:
        return self.cuda.device_count()

    def device_name(self, device) -> str:
        return self.cuda.get_device_name(device_index(device))

    def capability(self, device) -> tuple[int, int]:
        return tuple(self.cuda.get_device_capability(device_index(device)))

    def properties(self, device) -> dict:
        p = self.cuda.get_device_properties(device_index(device))
        return {"capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
                "memory_GiB": round(p.total_memory / 2**30, 2)}

    def bf16_supported(self) -> bool:
        return self.cuda.is_bf16_supported()

    def versions(self) -> dict:
        return {"cuda": self.torch.version.cuda, "cudnn": self.torch.backends.cudnn.version()}

    def set_device(self, device) -> None:
        self.cuda.set_device(self.torch.device(device))

    def synchronize(self, device=None) -> None:
        self.cuda.synchronize(device)

    def event(self):
        return self.cuda.Event(enable_timing=True)

    def empty_cache(self) -> None:
        self.cuda.empty_cache()

    def tensor_device(self, device: str) -> str:
        return device

    def nvml(self, device):
        return Nvml(device_index(device))


class _FakeEvent:
    """``torch.cuda.Event(enable_timing=True)`` on ``time.perf_counter``: the work ran on the CPU, synchronously."""

    def __init__(self):
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _FakeEvent) -> float:
        """Milliseconds from this event to ``end``, as CUDA events report."""
        return (end.t - self.t) * 1e3


class _FakeNvml:
    ok = True
    CLOCKS = {"sm_clock_MHz": 1980, "mem_clock_MHz": 2619, "temperature_C": 40, "power_W": 100.0,
              "throttle_reasons": 0}

    def static(self) -> dict:
        return {"nvml": "fake", "driver": "fake", "power_limit_W": 700.0, "max_sm_clock_MHz": 1980,
                "max_mem_clock_MHz": 2619}

    def sample(self) -> dict:
        return dict(self.CLOCKS)


class FakeCuda(TorchCuda):
    """One fake GPU, for tests on a CPU-only machine: tensors on the CPU, fixed properties and clocks."""

    fake = True
    NAME = "Fake H100 (CPU stand-in)"

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def device_name(self, device) -> str:
        return self.NAME

    def capability(self, device) -> tuple[int, int]:
        return (9, 0)

    def properties(self, device) -> dict:
        return {"capability": "9.0", "sm_count": 132, "memory_GiB": 80.0}

    def bf16_supported(self) -> bool:
        return True

    def versions(self) -> dict:
        return {"cuda": "fake", "cudnn": None}

    def set_device(self, device) -> None:
        pass

    def synchronize(self, device=None) -> None:
        pass

    def event(self):
        return _FakeEvent()

    def empty_cache(self) -> None:
        pass

    def tensor_device(self, device: str) -> str:
        return "cpu" if str(device).startswith("cuda") else device

    def nvml(self, device):
        return _FakeNvml()


_CACHE: dict = {}


def get() -> TorchCuda:
    """The backend ``PERFMODEL_CUDA_BACKEND`` names (``torch``, the default, or ``fake``)."""
    name = os.environ.get(ENV, "torch") or "torch"
    if name not in BACKENDS:
        from perfmodel.errors import PerfmodelError
        raise PerfmodelError(f"{ENV}={name!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if name not in _CACHE:
        _CACHE[name] = FakeCuda() if name == "fake" else TorchCuda()
    return _CACHE[name]


def place(device: str) -> str:
    """Where tensors for ``device`` are allocated: the device itself, or the CPU under the fake backend."""
    return device if device == "cpu" else get().tensor_device(device)
