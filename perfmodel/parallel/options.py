"""Switches of the parallel models: pipeline schedule (and interleaving), all-reduce algorithm and
buckets, overlap, recomputation, ZeRO sharding, sequence and expert parallelism, kernel parallelism
(:class:`.kernel_parallel.KernelOptions`).

Checks that need the layout or the model (ZeRO-3 with pipeline stages, virtual stages dividing the
layers per stage, the expert-parallel degree dividing experts and dp) are
:func:`perfmodel.parallel.step.check_layout_options`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PerfmodelError
from . import collectives as coll
from .data import DEFAULT_BUCKET_BYTES
from .kernel_parallel import KernelOptions
from .layout import SCHEDULES

#: activation recomputation: none; selective = the attention core only (Korthikanti et al. 2022, sec. 5);
#: full = every layer unit keeps only its input and reruns its forward pass in backward (Chen et al. 2016)
RECOMPUTE_MODES = ("none", "selective", "full")
#: ZeRO stages (Rajbhandari et al. 2020, sec. 5): 1 optimizer state, 2 + gradients, 3 + parameters sharded
ZERO_STAGES = (0, 1, 2, 3)
#: what ZeRO-3 gathers at a time: a layer unit (FSDP wraps each transformer block: Zhao et al. 2023 sec. 3.2)
#: or one module's parameters (DeepSpeed's stage 3 fetches each submodule's parameters as it runs)
ZERO3_GATHER = ("unit", "module")


@dataclass(frozen=True)
class ParallelOptions:
    schedule: str = "1f1b"                  # 1f1b | gpipe
    algorithm: str = "ring"                 # all-reduce: ring | tree | auto
    bucket_bytes: float = DEFAULT_BUCKET_BYTES
    overlap: bool = True                    # gradient all-reduce overlaps backward
    recompute: str = "none"                 # none | selective (attention core) | full (per unit); bools allowed
    kernel: KernelOptions = field(default_factory=KernelOptions)
    zero: int = 0                           # ZeRO stage 0-3 over the data-parallel group (3 = FSDP full shard)
    sequence_parallel: bool = False         # Megatron sequence parallelism in the tensor-parallel group
    virtual_stages: int = 1                 # model chunks per pipeline rank (interleaved 1F1B when > 1)
    ep: int = 1                             # expert-parallel degree (carved out of the data-parallel group)
    overlap_p2p: bool = False               # pipeline sends overlap compute (False: blocking, :mod:`.pipeline`)
    scatter_gather: bool = True             # pipeline sends split over the tp group, gathered after (Megatron)
    zero1_allreduce: bool = False           # ZeRO-1 all-reduces whole gradients (DeepSpeed BF16_Optimizer: .zero)
    zero3_gather: str = "unit"              # ZeRO-3 gathers a layer unit (FSDP wrap) | "module" (DeepSpeed)
    recompute_every: int = 1                # with full recompute: only every k-th block (torchtitan ac_freq)
    tied_grad_fp32: bool = False            # a tied weight's gradient copies all-reduced in fp32 (DeepSpeed bf16)

    def __post_init__(self):
        if isinstance(self.recompute, bool):   # the old on/off switch: True = full, False = none
            object.__setattr__(self, "recompute", "full" if self.recompute else "none")

    def check(self) -> None:
        if self.recompute not in RECOMPUTE_MODES:
            raise PerfmodelError(f"unknown --recompute mode {self.recompute!r}; allowed: {', '.join(RECOMPUTE_MODES)}")
        if self.zero not in ZERO_STAGES:
            raise PerfmodelError(f"--zero {self.zero!r} is not allowed; allowed: {', '.join(map(str, ZERO_STAGES))}")
        for name in ("virtual_stages", "ep", "recompute_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PerfmodelError(f"--{name.replace('_', '-')} {v!r} is not allowed; it must be an integer >= 1")
        if self.zero3_gather not in ZERO3_GATHER:
            raise PerfmodelError(f"ZeRO-3 gather granularity {self.zero3_gather!r} is not allowed; allowed: "
                                 f"{', '.join(ZERO3_GATHER)}")
        if self.schedule not in SCHEDULES:
            raise PerfmodelError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.algorithm not in coll.ALGORITHMS:
            raise PerfmodelError(f"unknown all-reduce algorithm {self.algorithm!r}; "
                                 f"allowed: {', '.join(coll.ALGORITHMS)}")
        if not self.bucket_bytes > 0:
            raise PerfmodelError(f"bucket size {self.bucket_bytes!r} is not allowed; it must be > 0 bytes")
