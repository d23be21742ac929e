"""What a prediction is about: a model and its knobs on hardware, in a precision, with an optimizer
and the switches of the parallel models.

    Scenario(model, hardware, knobs={}, dtype="fp32", optimizer="sgd", options=ParallelOptions())

The model's width (one, or an array in sweeps) and the parallel layout vary from call to call
and are arguments of the functions that take a scenario: :func:`perfmodel.predict.predict_step`,
:func:`perfmodel.parallel.step.predict_parallel`, :func:`perfmodel.parallel.search.plan`,
:func:`perfmodel.total.predict_total`, :func:`perfmodel.parallel.whatif.break_even`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import hardware as hardware_mod
from .errors import PerfmodelError
from .graph import PRICED_OPTIMIZERS
from .hardware import HardwareProfile
from .parallel.options import ParallelOptions


def check_precision(hw: HardwareProfile, dtype: str, optimizer: str) -> None:
    """One-line error unless the cost model prices ``optimizer`` and ``hw`` has ``dtype``."""
    if optimizer not in PRICED_OPTIMIZERS:
        raise PerfmodelError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(PRICED_OPTIMIZERS)}")
    hw.peak_flops(dtype)  # raises for a dtype the device lacks


@dataclass(frozen=True)
class Scenario:
    """``hardware`` is a profile, or its name or path (loaded here); ``knobs`` are the model's
    (``perfmodel models``), without ``batch`` for the parallel models, which take the global batch
    as an argument or search it."""

    model: str
    hardware: HardwareProfile
    knobs: dict[str, Any] = field(default_factory=dict)
    dtype: str = "fp32"
    optimizer: str = "sgd"
    options: ParallelOptions = field(default_factory=ParallelOptions)

    def __post_init__(self):
        if isinstance(self.hardware, str):
            object.__setattr__(self, "hardware", hardware_mod.load(self.hardware))
        object.__setattr__(self, "knobs", dict(self.knobs))

    def check(self) -> None:
        """One-line error for a dtype the hardware lacks, an unknown optimizer or bad parallel options."""
        check_precision(self.hardware, self.dtype, self.optimizer)
        self.options.check()
