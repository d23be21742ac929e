"""What to measure: shape grids for the quick, full and custom (test) runs.

One :class:`CalibrationPlan` drives every microbenchmark.  GEMM shapes are a log-spaced
cube over (M, N, K), extra density at the shapes recurrent training runs
(batch x H times H x gH for g = 1..4 gates) and at small sizes, capped in FLOPs
so one point never dominates the run.  Conv shapes are not listed here: they
are taken from the reference architectures' own op graphs
(``perfmodel.calibrate.conv.reference_shapes``), so they cannot drift from the models.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

OFFGRID_SEED = 0
OFFGRID_ALIGNMENTS = (1, 2, 4, 8)
OFFGRID_MIN_FLOPS = 1e5
#: operand layouts training launches (trans_a, trans_b): x @ W^T (nn.Linear forward),
#: dY @ W (data gradient), dY^T @ X (weight gradient)
LAYOUTS = ((False, True), (False, False), (True, False))


@dataclass(frozen=True)
class CalibrationPlan:
    name: str
    gemm_cube: tuple = (16, 64, 256, 1024)
    gemm_rnn_batch: tuple = (8, 32, 128)
    gemm_rnn_hidden: tuple = (64, 256, 1024)
    gemm_rnn_gates: tuple = (1, 2, 4)
    gemm_small: tuple = (1, 4)
    gemm_wide_n: tuple = (8192, 32768)  # vocabulary-sized outputs (softmax layers) ...
    gemm_wide_mk: tuple = (16, 64, 256)  # ... for these M and K
    max_wide_flops: float = 1e10
    gemm_bmm: tuple = ()               # (batch, m, n, k) batched GEMMs (attention)
    gemm_offgrid: int = 0              # shapes off the power-of-two grid, per layout (gemm_offgrid_shapes)
    max_gemm_flops: float = 2e9
    layouts: tuple = LAYOUTS
    memory_bytes: tuple = tuple(4 * 4 ** i for i in range(3, 13))  # 256 B .. 64 MiB
    memory_ops: tuple = ("copy", "elementwise", "reduction")
    layer_ops: tuple = ("batchnorm", "maxpool")  # kernels timed as curves of their own (perfmodel.calibrate.layers)
    layer_max_bytes: int = 64 * 2**20
    overhead_chain: int = 100
    rnn_cells: tuple = ("lstm",)
    rnn_hidden: tuple = (64, 128, 256, 512, 1024)
    rnn_batch: tuple = (4, 16, 64)
    rnn_steps: tuple = (4, 12)          # two lengths: a fused layer has per-call as well as per-step costs
    rnn_max_flops: float = 4e10
    first_touch_bytes: int = 64 * 2**20  # buffer size for the page-fault (first-touch) cost
    gemm_hot_m: tuple = ()              # GEMMs timed with both operands and the output hot (CPU)
    gemm_hot_nk: tuple = (64, 256, 1024, 4096)
    gemm_hot_max_bytes: int = 16 * 2**20  # at most this much weight (n x k), so it stays in cache
    cold_touch_bytes: int = 2 * 2**30    # the same after the pages sat freed (perfmodel.calibrate.allocation)
    cold_touch_repeats: int = 0          # 0: not measured (the full plans: 2)
    cold_touch_idle_s: float = 4.0
    conv_models: tuple = ()             # (model, width, knobs) whose conv shapes are measured
    conv_max_flops: float = 2e10
    warmup: int = 2
    repeats: int = 5
    min_block_s: float = 2e-3
    sections: tuple = ("overhead", "gemm", "memory", "allocation", "rnn", "conv")
    dtypes: tuple | None = None         # None: every dtype the base profile and the device support

    def gemm_hot_shapes(self) -> list[tuple]:
        """(m, n, k) of the hot GEMMs: small m, a weight n x k of at most ``gemm_hot_max_bytes`` (fp32)."""
        return [(m, n, k) for m in self.gemm_hot_m for n in self.gemm_hot_nk for k in self.gemm_hot_nk
                if n * k * 4 <= self.gemm_hot_max_bytes]

    def gemm_shapes(self) -> list[tuple]:
        """Sorted unique (batch, m, n, k) under the FLOP cap."""
        s = set()
        for m, n, k in itertools.product(self.gemm_cube, repeat=3):
            s.add((1, m, n, k))
        for b, h, g in itertools.product(self.gemm_rnn_batch, self.gemm_rnn_hidden, self.gemm_rnn_gates):
            s.add((1, b, g * h, h))      # recurrent step:   [batch x H] @ [H x gH]
            s.add((1, b, h, g * h))      # its data gradient
            s.add((1, g * h, h, b))      # its weight gradient dW = dY^T @ X
        for v in self.gemm_small:
            for m, n, k in itertools.product((v, 16), repeat=3):
                s.add((1, m, n, k))
        for b, m, n, k in self.gemm_bmm:
            s.add((b, m, n, k))
        s = {x for x in s if 2 * x[0] * x[1] * x[2] * x[3] <= self.max_gemm_flops}
        for n in self.gemm_wide_n:
            for m, k in itertools.product(self.gemm_wide_mk, repeat=2):
                if 2 * m * n * k <= self.max_wide_flops:
                    s.add((1, m, n, k))
        return sorted(s)

    def gemm_offgrid_shapes(self) -> list[tuple]:
        """``gemm_offgrid`` (1, m, n, k) shapes off the grid above, the same every run (seed
        ``OFFGRID_SEED``): each dimension log-uniform over the cube's range, all rounded to a multiple
        of an alignment ``a`` drawn from ``OFFGRID_ALIGNMENTS`` in turn, and one dimension an odd
        multiple (>= 3) of ``a`` -- so the shape's alignment (``perfmodel.cost.alignment``) is exactly
        ``a``; FLOPs between ``OFFGRID_MIN_FLOPS`` and ``max_gemm_flops`` (fewer shapes where at most
        ``100 x gemm_offgrid`` draws find none).  Measured, they give the
        efficiency lost off the grid, per alignment class."""
        import numpy as np
        rng = np.random.default_rng(OFFGRID_SEED)
        lo, hi = np.log2(min(self.gemm_cube)), np.log2(max(self.gemm_cube))
        out: list = []
        for _ in range(100 * self.gemm_offgrid):   # a small cube may not reach the FLOP range: fewer shapes
            if len(out) == self.gemm_offgrid:
                break
            a = OFFGRID_ALIGNMENTS[len(out) % len(OFFGRID_ALIGNMENTS)]
            dims = [max(a, int(round(2 ** rng.uniform(lo, hi) / a)) * a) for _ in range(3)]
            i = int(rng.integers(3))
            dims[i] = a * (2 * max(1, int(round(dims[i] / (2 * a)))) + 1)
            m, n, k = dims
            if OFFGRID_MIN_FLOPS <= 2 * m * n * k <= self.max_gemm_flops and (1, m, n, k) not in out:
                out.append((1, m, n, k))
        return out


QUICK = CalibrationPlan("quick", warmup=1, repeats=4, min_block_s=5e-4, rnn_batch=(4, 32), gemm_offgrid=12,
             rnn_hidden=(64, 256, 512, 1024), layer_max_bytes=16 * 2**20,
             gemm_rnn_gates=(2, 4),
             gemm_bmm=((64, 64, 64, 64), (16, 64, 64, 64), (64, 128, 128, 64), (16, 128, 64, 128)),
             conv_models=(("speech", 64, {"batch": 2, "seq_len": 100}),
                          ("resnet", 16, {"batch": 2, "image_size": 64})))
FULL = CalibrationPlan("full", warmup=1, repeats=4, min_block_s=1e-3, gemm_offgrid=40, cold_touch_repeats=2,
            gemm_cube=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            gemm_rnn_batch=(4, 8, 16, 32, 64, 128), gemm_rnn_hidden=(64, 128, 256, 512, 1024, 2048),
            gemm_small=(1, 2, 4, 8), gemm_wide_n=(8192, 32768, 65536), gemm_wide_mk=(16, 64, 256, 1024),
            max_wide_flops=1e11,
            gemm_bmm=tuple((b, t, t, d) for b in (16, 64, 256) for t in (64, 256, 1024) for d in (64, 128))
            + tuple((b, t, d, t) for b in (16, 64, 256) for t in (64, 256, 1024) for d in (64, 128)),
            max_gemm_flops=2e11, memory_bytes=tuple(4 * 2 ** i for i in range(6, 29)),
            rnn_cells=("lstm", "gru", "tanh"), rnn_hidden=(64, 128, 256, 512, 1024, 2048),
            rnn_batch=(2, 4, 8, 16, 32, 64, 128), rnn_steps=(10, 50), rnn_max_flops=4e11,
            conv_models=(("speech", 64, {"batch": 2, "seq_len": 100}),
                         ("resnet", 64, {"batch": 8, "image_size": 224})),
            conv_max_flops=2e11)
#: a full run on a CPU: the full grids, capped to what a CPU measures in minutes.  RNN layers are also
#: timed at 48 steps, as long as the reference models' sequences: on a CPU the per-step cost grows
#: with length, so a fit over short sequences alone under-predicts long ones.  The reference convs
#: are timed at two batches: a conv's ratio to the GEMM table depends on the batch, and a geometry's
#: ratios interpolate in log M between its batches.  Speech's second conv at batch 8 is over the FLOP
#: cap, so two smaller inputs (81 frequency bins, 50 and 25 frames) at batches 16 and 48 carry its
#: filter class to GEMM rows M of 8,400 and 13,104 (2 and 3x the batch-2 point) under the cap.
#: (The measurements: ``docs/accuracy.md``, "Calibration".)
FULL_CPU = replace(FULL, name="full-cpu", max_gemm_flops=4e9, max_wide_flops=1e10, rnn_max_flops=4e10,
                   gemm_hot_m=(1, 2, 4, 8, 16, 32, 64),
                   rnn_batch=(4, 8, 16, 32, 64), rnn_hidden=(64, 128, 256, 512, 1024), rnn_steps=(4, 16, 48),
                   rnn_cells=("lstm", "gru"), memory_bytes=tuple(4 * 2 ** i for i in range(6, 27)),
                   conv_models=(("speech", 64, {"batch": 2, "seq_len": 100}),
                                ("speech", 64, {"batch": 8, "seq_len": 100}),
                                ("speech", 64, {"batch": 16, "seq_len": 50, "freq_bins": 81, "target_len": 10}),
                                ("speech", 64, {"batch": 48, "seq_len": 25, "freq_bins": 81, "target_len": 10}),
                                ("resnet", 32, {"batch": 2, "image_size": 112}),
                                ("resnet", 32, {"batch": 16, "image_size": 112})),
                   conv_max_flops=2e10)
PLANS = {"quick": QUICK, "full": FULL, "full-cpu": FULL_CPU}


def plan_for(kind: str, quick: bool) -> CalibrationPlan:
    """``--quick`` on any device, else the full plan for a GPU or a CPU."""
    return QUICK if quick else (FULL if kind == "gpu" else FULL_CPU)
