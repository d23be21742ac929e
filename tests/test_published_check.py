"""``perfmodel check published``: its arithmetic on two rows of perfmodel/published/runs.csv, and the
per-device memory of three published configurations against the ZeRO and Korthikanti formulas.

Sources (SOURCES.md): Korthikanti et al. 2022 (arXiv:2205.05198) Table 3/5 and eqs. of sec. 4;
Narayanan et al. 2021 (arXiv:2104.04473) eqs. (2), (3) and Table 1; Rajbhandari et al. 2020 (ZeRO)
sec. 3.1; karpathy/llm.c scripts/run_gpt2_124M.sh.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel.cli import main as cli
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.options import ParallelOptions
from perfmodel.parallel.step import predict_parallel
from perfmodel.published.check import check_published
from perfmodel.scenario import Scenario

A100 = "A100-SXM4-80GB"
KORTHIKANTI_22B = {"layers": 48, "heads": 64, "seq_len": 2048, "vocab": 51200, "block": "gpt2", "attention": "fused",
                   "dropout": 0.1}
NARAYANAN_1_7B = {"layers": 24, "heads": 24, "seq_len": 2048, "vocab": 51200, "block": "gpt2", "attention": "fused",
                  "dropout": 0.1}


def _time(knobs, dtype, width, layout, batch, **opts):
    s = Scenario("transformer", A100, knobs, dtype, "adam", ParallelOptions(**opts))
    return predict_parallel(s, width, layout, batch).time_per_step_s


# -- the command's arithmetic on two rows -----------------------------------------------------------

@pytest.fixture(scope="module")
def two_rows():
    return check_published(ids={"korthikanti22-22b-full", "narayanan21-t1-1.7b"})


def test_iteration_time_row(two_rows):
    """korthikanti22-22b-full measured 1.42 s per iteration (Table 5, "Full Recompute"); its row states
    t = 8, p = 1, 8 GPUs, batch 4, micro-batch 4, full recompute; the attention kernel (not stated) is
    Megatron's fused softmax, dropout Megatron's default 0.1, and the gradient all-reduce is not overlapped
    (sec. 6.3)."""
    x = next(r for r in two_rows["results"] if r.run.id == "korthikanti22-22b-full")
    t = _time(KORTHIKANTI_22B, "bf16", 6144, Layout(1, 8, 1, 1), 4, recompute="full", overlap=False,
              algorithm="auto")
    assert x.run.measured_unit == "iteration_s" and x.run.measured == 1.42
    assert x.predicted == pytest.approx(t, rel=1e-12)                 # the prediction is the step time
    assert x.error == pytest.approx((t - 1.42) / 1.42, rel=1e-12)     # signed, a fraction
    assert x.fits and x.chosen == {}                                   # nothing left open


def test_tflops_row_uses_the_papers_flop_count(two_rows):
    """narayanan21-t1-1.7b measured 137 TFLOP/s per GPU on 32 GPUs with eq. (3):
    F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) = 96 x 512 x 2048 x 24 x 2304^2 x (1 + 2048/13824 +
    51200/884736) = 1.28247e16 x 1.206019 = 1.54668e16 FLOPs per iteration, so predicted TFLOP/s =
    1.54668e16 / (T x 32) / 1e12.  The micro-batch is open: the fastest of 1, 2, 4, 8, 16 that fits."""
    x = next(r for r in two_rows["results"] if r.run.id == "narayanan21-t1-1.7b")
    times = {mb: _time(NARAYANAN_1_7B, "fp16", 2304, Layout(32, 1, 1, 512 // (32 * mb)), 512, recompute="full",
                       overlap=False, algorithm="auto") for mb in (1, 2, 4, 8, 16)}
    mb = x.chosen["micro_batch"]
    assert times[mb] == pytest.approx(min(times.values()), rel=1e-12)
    assert x.predicted == pytest.approx(1.54668e16 / (times[mb] * 32) / 1e12, rel=1e-5)
    assert x.error == pytest.approx((x.predicted - 137) / 137, rel=1e-12)


def test_mape_is_the_mean_absolute_error(two_rows):
    errs = {r.run.source: abs(r.error) for r in two_rows["results"]}
    assert two_rows["mape_fraction"]["by_source"] == pytest.approx(errs)
    assert two_rows["mape_fraction"]["overall"] == pytest.approx((errs["korthikanti2022"] + errs["narayanan2021"]) / 2)
    assert two_rows["fits"] == {"ran": 2, "predicted_to_fit": 2, "not_fitting": [], "out_of_memory_in_source": 0,
                                "predicted_not_to_fit": 0, "fitting_but_oom": []}


def test_bloom_rows_use_their_clusters_network_and_deepspeeds_reduction():
    """BLOOM 176B (tr11) ran on Jean Zay: an NCCL all-reduce of 4 GB fp32 over 4 of its A100 nodes took
    1.53 s, busbw = 4e9 / 1.53 x 2 x 31/32 = 5.07 GB/s (bigscience experiments/bandwidth/
    all_reduce_bench-a100-n4.txt), not the profile's 25 GB/s; DeepSpeed's BF16_Optimizer all-reduces the
    whole gradients, then all-gathers the updated shards.  Per stage P = its parameters x 2 bytes over
    dp = 8 nodes, not overlapped: (2 + 1) x 7/8 x P / 5.07 GB/s + 3 x 7 alpha, plus the tied embedding's
    2-rank all-reduce of its fp32 gradient (DeepSpeed's weight._hp_grad: V h / tp x 4 bytes, V = 250880,
    h = 14336, tp = 4) on the first and last stage."""
    from dataclasses import replace

    from perfmodel import hardware
    from perfmodel.parallel import collectives as coll
    from perfmodel.parallel.device import device_pass
    from perfmodel.parallel.pipeline import partition
    from perfmodel.published.runs import load_rows, setup
    row = next(r for r in load_rows() if r["id"] == "bloom176b-gbs16-rampup")
    run = setup(row, hardware.available())
    assert run.cluster == {"inter_node_busbw_GBps": 5.07} and run.options["zero1_allreduce"]
    assert not run.options["overlap"] and run.options["zero"] == 1 and run.options["tied_grad_fp32"]
    hw = replace(hardware.load(A100), **run.cluster)
    s = Scenario("transformer", hw, run.knobs, "bf16", "adam", ParallelOptions(**run.options))
    st = partition(device_pass(s, [14336], 2, 4), 12, "full")
    ln = coll.link(hw, True)
    assert ln.beta_s_per_byte == pytest.approx(1 / 5.07e9)
    dp_s = 3 * (7 / 8 * st.params[:, 0] * 2 * ln.beta_s_per_byte) + 3 * 7 * ln.alpha_s
    copy = 250880 * 14336 / 4 * 4
    tied = np.array([1.0] + [0.0] * 10 + [1.0]) * (copy * ln.beta_s_per_byte + 2 * ln.alpha_s)
    r = check_published(ids={run.id})["results"][0]
    pred = predict_parallel(s, 14336, Layout(8, 4, 12, 1), 16).step
    assert r.time_per_step_s == pytest.approx(pred.time_per_step_s, rel=1e-12)
    assert pred.dp_allreduce_s == pytest.approx((dp_s + tied).max(), rel=0.01)   # buckets add latency only


def test_json_has_fractions_and_unit_named_keys():
    res = CliRunner().invoke(cli, ["check", "published", "--json", "--id", "narayanan21-t1-1.7b",
                                   "--id", "opt175b"], catch_exceptions=False)
    assert res.exit_code == 0
    out = json.loads(res.output)
    row, skipped = out["rows"]
    assert {"predicted_tflops_per_gpu", "measured_tflops_per_gpu", "error_fraction", "fits_predicted",
            "per_device_memory_bytes"} <= set(row)
    assert abs(row["error_fraction"]) < 1                        # a fraction, not percent
    assert skipped["not_modelled"] == "the row gives no vocab"   # listed, never dropped
    assert out["not_modelled"] == ["opt175b"]


def test_a_run_out_of_memory_in_its_source_is_checked_for_memory_only():
    """torchtitan's Llama 2 70B at local batch 2 with every 2nd block checkpointed ran out of memory on
    64 A100 80GB (docs/performance.md at 395a52627); the sibling with every block checkpointed ran.  The
    row has no throughput: it is predicted for memory only, and the summary counts it apart."""
    rep = check_published(ids={"torchtitan-a100-llama2-70b-bs2-selective-layer", "torchtitan-a100-llama2-70b-bs2-full"})
    oom, full = sorted(rep["results"], key=lambda x: x.run.id != "torchtitan-a100-llama2-70b-bs2-selective-layer")
    assert oom.error is None and oom.fits is False and oom.memory_bytes > oom.capacity_bytes
    assert full.fits and full.memory_bytes < oom.memory_bytes
    assert rep["fits"]["out_of_memory_in_source"] == 1 and rep["fits"]["predicted_not_to_fit"] == 1
    assert list(rep["rows_by_source"].values()) == [1]          # MAPE over the row that measured time only
    text = CliRunner().invoke(cli, ["check", "published", "--id", oom.run.id]).output
    assert "memory only" in text and "NO (OOM in source)" in text
    assert "runs out of memory in reality predicted not to fit: 1 of 1" in text


def test_text_lists_not_modelled_rows():
    res = CliRunner().invoke(cli, ["check", "published", "--id", "llama3-405b-t4-row3"], catch_exceptions=False)
    assert res.exit_code == 0
    assert "llama3-405b-t4-row3" in res.output and "not modelled: global batch not stated" in res.output


# -- per-device memory of three published configurations ------------------------------------------

def _memory(knobs, width, layout, batch, layers, **opts):
    """Memory parts at ``layers`` and the activation bytes one layer adds (p = 1: one micro-batch in flight)."""

    def step(n):
        s = Scenario("transformer", A100, {**knobs, "layers": n}, "bf16", "adam", ParallelOptions(**opts))
        return predict_parallel(s, width, layout, batch).step

    full, less = step(layers), step(layers - 1)
    return full, full.memory_activations_bytes - less.memory_activations_bytes


def test_memory_llmc_gpt2_124m_zero1():
    """llm.c GPT-2 124M on 8 A100 (-z 1: ZeRO-1), micro-batch 64, s = 1024, h = 768, a = 12, flash attention,
    no recompute.  ZeRO sec. 3.1: 2 + 2 bytes of 16-bit weights and gradients per parameter, K = 12 of
    fp32 master weights and Adam moments sharded over N_d = 8: P = 124,439,808 (GPT-2 small, tied head)."""
    p = 124_439_808
    e, layer = _memory({"heads": 12, "seq_len": 1024, "vocab": 50257, "attention": "flash"}, 768, Layout(8, 1, 1, 1),
                       512, 12, zero=1)
    assert e.memory_weights_bytes == 2 * p and e.memory_gradients_bytes == 2 * p
    assert e.memory_optimizer_bytes == 12 * p / 8
    # Korthikanti eq. (1) per layer, sbh (34 + 5 a s / h), without the terms this model has no tensor for:
    # dropout masks (2 sbh) and the s x s scores (flash keeps none), plus flash's log-sum-exp (4 a s b):
    # 1024 x 64 x 768 x 32 + 4 x 12 x 1024 x 64 = 1,610,612,736 + 3,145,728 = 1,613,758,464 bytes
    assert layer == 1024 * 64 * 768 * 32 + 4 * 12 * 1024 * 64 == 1_613_758_464


def test_memory_zero3_gpt3_175b_on_384():
    """Narayanan Table 2, ZeRO-3 without model parallelism: GPT-3 (l = 96, h = 12288, V = 51200, s = 2048) on
    384 GPUs, micro-batch 4, full recompute.  P = eq. (2) + the final LayerNorm (2h)
    = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) + 2h (l = n in the code); ZeRO-3 keeps (2 + 2 + 12) P / 384
    plus, gathered in full, the layer computing and the one prefetched (2 x (12 h^2 + 13 h) x 2 bytes)."""
    h, n, v, s = 12288, 96, 51200, 2048
    p = 12 * n * h**2 + 13 * n * h + (v + s) * h + 2 * h
    assert p == 174_615_846_912    # "174.6B"
    e, layer = _memory({"heads": 96, "seq_len": s, "vocab": v, "attention": "fused"}, h, Layout(384, 1, 1, 1), 1536,
                       n, zero=3, recompute="full")
    unit = 12 * h**2 + 13 * h
    assert e.memory_weights_bytes == pytest.approx(2 * p / 384 + 2 * unit * 2, rel=1e-12)
    assert e.memory_gradients_bytes == pytest.approx(2 * p / 384, rel=1e-12)
    assert e.memory_optimizer_bytes == pytest.approx(12 * p / 384, rel=1e-12)
    # full recompute keeps each layer's 16-bit input: 2 s b h = 2 x 2048 x 4 x 12288 (Korthikanti sec. 5)
    assert layer == 2 * s * 4 * h
    assert e.fits_in_memory


def test_memory_korthikanti_22b_selective_sequence_parallel():
    """Korthikanti Table 3 22B (h = 6144, a = 64, l = 48, t = 8, micro-batch 4, dropout 0.1) with selective
    recompute and sequence parallelism: per layer sbh x 34 / t (sec. 5) = 2048 x 4 x 6144 x 34 / 8
    = 213,909,504 bytes (without dropout, 2 sbh / t of masks less: 32 / t).  Parameters (ZeRO 0, 16 bytes
    each: 2 weights + 4 fp32 master + 2 gradients + 8 Adam) on one of t = 8: per layer 12 h^2 + 9 h split
    (QKV, projection and MLP weights and biases) and 4h replicated (two LayerNorms); the word embedding
    V h split, the position embedding s h and the final LayerNorm 2h replicated."""
    h, n, v, s, t = 6144, 48, 51200, 2048, 8
    knobs = {"heads": 64, "seq_len": s, "vocab": v, "attention": "fused"}
    e, layer = _memory({**knobs, "dropout": 0.1}, h, Layout(1, t, 1, 1), 4, n, recompute="selective",
                       sequence_parallel=True)
    assert layer == s * 4 * h * 34 / t == 213_909_504
    assert _memory(knobs, h, Layout(1, t, 1, 1), 4, n, recompute="selective", sequence_parallel=True)[1] == \
        s * 4 * h * 32 / t
    p_dev = n * ((12 * h**2 + 9 * h) / t + 4 * h) + v * h / t + s * h + 2 * h
    assert e.memory_weights_bytes + e.memory_gradients_bytes + e.memory_optimizer_bytes == \
        pytest.approx(16 * p_dev, rel=1e-12)
