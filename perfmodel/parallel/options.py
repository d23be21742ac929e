"""Switches of the parallel models: pipeline schedule, all-reduce algorithm and buckets, overlap,
recomputation, kernel parallelism (:class:`.kernel_parallel.KernelOptions`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PerfmodelError
from . import collectives as coll
from .data import DEFAULT_BUCKET_BYTES
from .kernel_parallel import KernelOptions
from .layout import SCHEDULES


@dataclass(frozen=True)
class ParallelOptions:
    schedule: str = "1f1b"                  # 1f1b | gpipe
    algorithm: str = "ring"                 # all-reduce: ring | tree | auto
    bucket_bytes: float = DEFAULT_BUCKET_BYTES
    overlap: bool = True                    # gradient all-reduce overlaps backward
    recompute: bool = False                 # activation checkpointing per unit
    kernel: KernelOptions = field(default_factory=KernelOptions)

    def check(self) -> None:
        if self.schedule not in SCHEDULES:
            raise PerfmodelError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.algorithm not in coll.ALGORITHMS:
            raise PerfmodelError(f"unknown all-reduce algorithm {self.algorithm!r}; "
                                 f"allowed: {', '.join(coll.ALGORITHMS)}")
        if not self.bucket_bytes > 0:
            raise PerfmodelError(f"bucket size {self.bucket_bytes!r} is not allowed; it must be > 0 bytes")
