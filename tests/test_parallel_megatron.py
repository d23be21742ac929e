"""Cross-check against published large-scale runs: Megatron-LM on A100 clusters.

Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM" (SC'21, arXiv:2104.04473), Table 1: GPT models, vocabulary 51,200, sequence 2,048,
mixed precision (fp16, A100 peak 312 TFLOP/s), activation recomputation, Adam, tensor degree t,
pipeline degree p, data degree n/(t*p).  Achieved TFLOP/s per GPU is their eq. (3):

    F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h))   FLOPs per iteration (4 passes: recompute included)
    TFLOP/s per GPU = F / (iteration time x n)

Here the iteration time is perfmodel's prediction for the same (t, p, d, B) on the A100-SXM4-80GB
profile with recompute on, 1F1B, micro-batch 1 (the micro-batch Table 1 omits; Table 2's PTD-P
runs use 1); the achieved TFLOP/s follow from the same eq. (3) so the comparison is like for like.
"""
import numpy as np
import pytest

from perfmodel import hardware
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.options import ParallelOptions
from perfmodel.parallel.step import predict_parallel
from perfmodel.scenario import Scenario

#: params (B), heads, hidden h, layers l, t, p, GPUs n, batch B, achieved TFLOP/s per GPU (Table 1)
TABLE_1 = [
    (1.7, 24, 2304, 24, 1, 1, 32, 512, 137), (3.6, 32, 3072, 30, 2, 1, 64, 512, 138),
    (7.5, 32, 4096, 36, 4, 1, 128, 512, 142), (18.4, 48, 6144, 40, 8, 1, 256, 1024, 135),
    (39.1, 64, 8192, 48, 8, 2, 512, 1536, 138), (76.1, 80, 10240, 60, 8, 4, 1024, 1792, 140),
    (145.6, 96, 12288, 80, 8, 8, 1536, 2304, 148), (310.1, 128, 16384, 96, 8, 16, 1920, 2160, 155),
    (529.6, 128, 20480, 105, 8, 35, 2520, 2520, 163), (1008.0, 160, 25600, 128, 8, 64, 3072, 3072, 163),
]
SEQ, VOCAB = 2048, 51200
#: the largest error accepted per row; the observed errors are printed with ``pytest -s``
MAX_ABS_ERROR = 0.25


def megatron_flops(batch, layers, hidden, seq=SEQ, vocab=VOCAB):
    return 96 * batch * seq * layers * hidden ** 2 * (1 + seq / (6 * hidden) + vocab / (16 * layers * hidden))


def megatron_params(layers, hidden, seq=SEQ, vocab=VOCAB):
    """Their eq. (2) (sec. 5.1): P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h))."""
    return 12 * layers * hidden ** 2 * (1 + 13 / (12 * hidden) + (vocab + seq) / (12 * layers * hidden))


def test_flop_formula_arithmetic():
    # 1.7B row: 96 x 512 x 2048 x 24 x 2304^2 = 1.28247e16; x (1 + 2048/13824 + 51200/884736)
    #         = 1.28247e16 x (1 + 0.148148 + 0.057870) = 1.54668e16 FLOPs per iteration
    assert megatron_flops(512, 24, 2304) == pytest.approx(1.54668e16, rel=1e-5)
    # eq. (2): 12 x 24 x 2304^2 x (1 + 13/27648 + 53248/663552) = 1,652,226,048 ("1.7B")
    assert megatron_params(24, 2304) == pytest.approx(1_652_226_048)


def test_table_1_per_gpu_throughput():
    a100 = hardware.load("A100-SXM4-80GB")
    errors = []
    for params_b, heads, h, layers, t, p, n, batch, published in TABLE_1:
        d = n // (t * p)
        knobs = {"seq_len": SEQ, "layers": layers, "heads": heads, "vocab": VOCAB}
        s = Scenario("transformer", a100, knobs, "fp16", "adam", ParallelOptions(recompute=True))
        r = predict_parallel(s, h, Layout(d, t, p, batch // d), batch)
        # the same models: perfmodel's exact count vs eq. (2) (which leaves out the final LayerNorm)
        assert r.params == pytest.approx(megatron_params(layers, h), rel=1e-5)
        assert r.params == pytest.approx(params_b * 1e9, rel=0.05)
        assert r.fits_in_memory
        predicted = megatron_flops(batch, layers, h) / (r.time_per_step_s * n) / 1e12
        err = (predicted - published) / published
        errors.append(err)
        print(f"{params_b:7.1f}B t={t} p={p:2d} d={d:3d} B={batch}: predicted {predicted:6.1f} vs published "
              f"{published} TFLOP/s per GPU ({100 * err:+.1f}%)")
        assert abs(err) <= MAX_ABS_ERROR
    print(f"mean |error| {100 * np.mean(np.abs(errors)):.1f}%, mean error {100 * np.mean(errors):+.1f}%")
