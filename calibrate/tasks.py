"""A microbenchmark is a list of :class:`Task` s: one measured point each, run under a progress bar."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Task:
    section: str                      # "gemm", "memory", "overhead", "rnn", "conv"
    label: str                        # shown on the progress bar
    run: Callable[[], object]         # -> a point (dict), a list of points, or None when skipped
