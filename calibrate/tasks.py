"""A microbenchmark is a list of :class:`Probe` s: one measured point each, timed by
:mod:`perfmodel.calibrate.interleave`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Probe:
    """One calibration point: the callables to time and the rule that turns their timings into the point.

    ``setup()`` builds the callables, allocating their tensors, as ``{name: fn}``; the scheduler warms
    each up and times it in blocks interleaved with other probes' blocks; ``combine({name: Timing})``
    returns the point (a dict), a list of points, or a section's whole object.  ``setup`` or a first
    call raising one of ``rejects`` means the library refuses the point (an fp8 GEMM whose sizes are
    not multiples of 16): it is left out.
    """

    section: str                          # "gemm", "memory", "overhead", "allocation", "rnn", "conv"
    label: str                            # shown on the progress bar and in unstable_points
    setup: Callable[[], dict]
    combine: Callable[[dict], object]
    dtype: str | None = None              # timed under perfmodel.calibrate.devices.matmul_precision(dtype)
    min_repeats: int = 0                  # samples per callable: at least this, at least the plan's
    min_block_s: float = 0.0              # seconds per timed block: at least this, at least the plan's
    rejects: tuple = ()
