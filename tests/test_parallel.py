"""Parallelism formulas, with the arithmetic written next to each expected number.

Profiles used (profiles/*.json): H100-SXM5 has NVLink 450 GB/s (datasheet), of which NCCL's ring reaches
367.61 GB/s bus bandwidth (intra_node_busbw_GBps, cited there), and 2 us per hop inside a node of 8,
InfiniBand 50 GB/s and 5 us per hop across nodes; 132 SMs x (256 KiB registers + 228 KiB shared memory).
"""
import numpy as np
import pytest

from perfmodel import hardware
from perfmodel.errors import PerfmodelError
from perfmodel.ops import OpKind
from perfmodel.parallel import collectives as coll
from perfmodel.parallel.data import gradient_allreduce_s
from perfmodel.parallel.device import annotate_loops, build_fwd, device_pass
from perfmodel.parallel.kernel_parallel import KernelOptions, onchip_bytes
from perfmodel.parallel.layout import Layout, check_layout, resolve_layout
from perfmodel.parallel.options import ParallelOptions
from perfmodel.parallel.pipeline import bubble_fraction, schedule_time, stage_of_units
from perfmodel.parallel.step import predict_parallel
from perfmodel.parallel.tensor import split
from perfmodel.predict import predict_arrays
from perfmodel.scenario import Scenario

H100 = hardware.load("H100-SXM5")


# -- collectives: the alpha-beta model -------------------------------------------------------
def test_ring_allreduce_intra_node_arithmetic():
    # S = 1 GB over P = 8 GPUs on NVLink: 2(P-1)/P * S / busbw + 2(P-1) * alpha, busbw the measured
    # ring bus bandwidth 367.61 GB/s (not the 450 GB/s datasheet link)
    #   = 2*7/8 * 1e9 / 367.61e9 + 14 * 2e-6 = 4.76047e-3 + 2.8e-5 = 4.78847e-3 s
    ln = coll.link(H100, coll.spans_nodes(H100, 8))
    assert coll.ring_allreduce_s(1e9, 8, ln) == pytest.approx(2 * 7 / 8 * 1e9 / 367.61e9 + 14 * 2e-6)
    assert coll.ring_allreduce_s(1e9, 8, ln) == pytest.approx(4.78847e-3, rel=1e-5)


def test_ring_allreduce_inter_node_arithmetic():
    # P = 16 spans two 8-GPU nodes: the ring is paced by InfiniBand, 50 GB/s and 5 us per hop
    #   = 2*15/16 * 1e9 / 50e9 + 30 * 5e-6 = 0.0375 + 0.00015 = 0.03765 s
    ln = coll.link(H100, coll.spans_nodes(H100, 16))
    assert coll.ring_allreduce_s(1e9, 16, ln) == pytest.approx(0.03765)


def test_tree_allgather_p2p_and_degenerate_cases():
    ln = coll.Link(2e-6, 1 / 450e9)
    # tree: 2*ceil(log2 8)*alpha + 2*S*beta = 6 * 2e-6 + 2 * 1e9 / 450e9
    assert coll.tree_allreduce_s(1e9, 8, ln) == pytest.approx(6 * 2e-6 + 2e9 / 450e9)
    # small messages: tree's log latency beats the ring's 2(P-1) hops; auto takes the minimum
    small = coll.allreduce_s(1024, 64, ln, "auto")
    assert small == pytest.approx(coll.tree_allreduce_s(1024, 64, ln))
    assert small < coll.ring_allreduce_s(1024, 64, ln)
    # all-gather of S gathered bytes: (P-1)*alpha + (P-1)/P * S * beta
    assert coll.allgather_s(8e6, 4, ln) == pytest.approx(3 * 2e-6 + 3 / 4 * 8e6 / 450e9)
    assert coll.p2p_s(1e6, ln) == pytest.approx(2e-6 + 1e6 / 450e9)
    # nothing to do: one device, or zero bytes
    assert coll.ring_allreduce_s(1e9, 1, ln) == 0 and coll.allgather_s(0, 8, ln) == 0
    with pytest.raises(PerfmodelError, match="unknown all-reduce algorithm"):
        coll.allreduce_s(1, 2, ln, "butterfly")


def test_calibrated_collectives_override_the_datasheet_link():
    import dataclasses
    cal = {"collectives": {"allreduce": {"alpha_s": 1e-5, "beta_s_per_byte": 1e-10, "link": "intra_node"}}}
    hw = dataclasses.replace(H100, calibration=cal)
    ln = coll.link(hw, False)
    assert (ln.alpha_s, ln.beta_s_per_byte) == (1e-5, 1e-10)
    # the inter-node link was not measured: datasheet 5 us, 50 GB/s
    assert coll.link(hw, True).beta_s_per_byte == pytest.approx(1 / 50e9)


# -- data parallelism ------------------------------------------------------------------------
def test_bucketed_allreduce_overlap_arithmetic():
    ln = coll.Link(2e-6, 1 / 450e9)
    g = 100 * 2**20                            # 100 MiB of gradients -> 4 buckets of 25 MiB
    c = coll.ring_allreduce_s(25 * 2**20, 8, ln)
    total, exposed = gradient_allreduce_s(g, 0.010, 8, ln)
    assert total == pytest.approx(4 * c)
    # exposed = max(n*c - W*(n-1)/n, c) = max(4c - 0.0075, c) = c: hidden behind a 10 ms backward
    assert exposed == pytest.approx(max(4 * c - 0.010 * 3 / 4, c)) == pytest.approx(c)
    _, exposed_short = gradient_allreduce_s(g, 1e-4, 8, ln)     # 0.1 ms backward hides little
    assert exposed_short == pytest.approx(4 * c - 1e-4 * 3 / 4)
    _, no_overlap = gradient_allreduce_s(g, 0.010, 8, ln, overlap=False)
    assert no_overlap == pytest.approx(4 * c)


# -- pipeline --------------------------------------------------------------------------------
def test_bubble_fraction_formula_and_schedule():
    # (p-1)/(m+p-1): 4 stages, 8 micro-batches -> 3/11
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    tau = np.ones((4, 1))                       # balanced stages, 1 s per micro-batch each
    t, bubble = schedule_time(tau, 0.0, 8)
    assert t[0] == pytest.approx(8 + 4 - 1) and bubble[0] == pytest.approx(3 / 11)
    # stacked RNN wavefront: items are timesteps, g = 50 -> (p-1)/(m*g+p-1) = 3/(400+3)
    t, bubble = schedule_time(tau, 0.0, 8, steps=50)
    assert t[0] == pytest.approx((8 * 50 + 3) / 50) and bubble[0] == pytest.approx(3 / 403)
    # a recurrence cut across stages with m < S: each timestep cycles through all S stages
    t, _ = schedule_time(tau, 0.0, 2, steps=50, cyclic=True)
    assert t[0] == pytest.approx(50 * max(2 * 1 / 50, 4 * 1 / 50))
    # sends of c s per item on the critical path: (m*g-1)*max(tau,c) + sum(tau) + (S-1)*c
    t, _ = schedule_time(tau, 0.25, 8)
    assert t[0] == pytest.approx(7 * 1 + 4 + 3 * 0.25)


def test_stage_partition_is_contiguous_balanced_and_non_empty():
    w = np.array([[1.0], [1.0], [1.0], [1.0], [4.0], [0.01]])
    sid = stage_of_units(w, 2)[:, 0]
    assert list(sid) == [0, 0, 0, 0, 1, 1]       # cut at the running total closest to 8.01/2
    sid = stage_of_units(w, 6)[:, 0]
    assert list(sid) == [0, 1, 2, 3, 4, 5]


# -- tensor parallelism ----------------------------------------------------------------------
def test_tensor_split_of_a_transformer_is_megatron():
    # per block: qkv column (bwd all-reduce), proj row (fwd all-reduce), fc column (bwd), fc2 row (fwd):
    # 2 all-reduces of tokens x width forward and 2 backward (Shoeybi et al. 2019, Fig. 3)
    g = build_fwd("transformer", 128, 2, "fp32", {"layers": 2, "seq_len": 16, "vocab": 512})
    s = split(annotate_loops(g), 2)
    tokens, width = 2 * 16, 128
    per = {}
    for item in s.items:
        for c in item.comm:
            if np.any(np.asarray(c.nbytes) > 0):
                per.setdefault((c.path, c.phase, c.kind), c.nbytes)
    block = {k: v for k, v in per.items() if k[0].startswith("blocks/0/")}
    assert block == {("blocks/0/attn/qkv", "bwd", "allreduce"): tokens * width * 4,
                     ("blocks/0/attn/proj", "fwd", "allreduce"): tokens * width * 4,
                     ("blocks/0/mlp/fc", "bwd", "allreduce"): tokens * width * 4,
                     ("blocks/0/mlp/proj", "fwd", "allreduce"): tokens * width * 4}
    # vocab-parallel cross-entropy: 2 fp32 per token
    assert per[("loss", "fwd", "allreduce")] == tokens * 2 * 4
    # attention runs on heads / T: scores GEMM batch = batch * heads / 2
    scores = next(i for i in s.items if i.path == "blocks/0/attn/scores").ops[0]
    assert scores.dims["batch"] == 2 * (128 // 64) // 2


def test_tensor_split_of_an_lstm_communicates_every_timestep():
    # wordlm: hidden units split; the hidden state (batch x hidden) is all-gathered each of the seq_len steps
    g = build_fwd("wordlm", 256, 8, "fp32", {"seq_len": 20})
    s = split(annotate_loops(g), 4)
    l1 = next(i for i in s.items if i.path == "lstm/l1")
    per_step = [c for c in l1.comm if c.repeat == 20]
    assert {(c.kind, c.phase, int(c.nbytes)) for c in per_step} == {("allgather", "fwd", 8 * 256 * 4),
                                                                    ("reducescatter", "bwd", 8 * 256 * 4)}
    rec = next(o for o in l1.ops if o.path.endswith("recurrent_gemm") and o.phase == "fwd")
    assert (rec.dims["m"], rec.dims["n"], rec.dims["k"], rec.repeat) == (8, 4 * 256 // 4, 256, 20)


def test_memory_per_device_under_tensor_split():
    # mlp width 1024, depth 4, input 1024, 10 classes: every Linear is split over T = 4 (ceil):
    #   4 x ceil((1024*1024 + 1024)/4) + ceil((1024*10 + 10)/4) = 4 x 262,400 + 2,563 = 1,052,163 params
    p1 = predict_parallel(Scenario("mlp", H100), 1024, Layout(), batch=128)
    p4 = predict_parallel(Scenario("mlp", H100), 1024, Layout(tp=4), batch=128)
    assert p1.step.memory_weights_bytes == 4 * (4 * (1024 * 1024 + 1024) + 10 * 1024 + 10)
    assert p4.step.memory_weights_bytes == 4 * (4 * 262_400 + 2_563)
    assert p4.step.memory_gradients_bytes == p4.step.memory_weights_bytes   # fp32 sgd
    assert p4.step.memory_optimizer_bytes == 0


def test_memory_per_device_under_pipeline_split():
    # 1F1B keeps min(m, S) micro-batches of activations per stage, GPipe keeps m
    one = predict_parallel(Scenario("mlp", H100, options=ParallelOptions()), 1024, Layout(pp=2, micro_batches=8),
                           batch=256)
    gp = predict_parallel(Scenario("mlp", H100, options=ParallelOptions(schedule="gpipe")), 1024,
                          Layout(pp=2, micro_batches=8), batch=256)
    assert gp.step.memory_activations_bytes == pytest.approx(4 * one.step.memory_activations_bytes)
    # weights of the fullest stage <= the whole model, and both stages together hold it all
    assert one.step.memory_weights_bytes < 4 * one.params
    names = [n for stage in one.stage_units for n in stage]
    assert names == ["layers/0", "layers/1", "layers/2", "layers/3", "head", "loss"]


def test_single_device_layout_reproduces_predict_arrays():
    for model in ("charlm", "wordlm", "speech", "mlp"):
        w = np.array([256, 1024])
        u = device_pass(Scenario(model, H100), w, 16, 1)
        ref = predict_arrays(model, w, H100, batch=16)["time_per_step_s"]
        assert np.allclose(u.fwd_s.sum(0) + u.bwd_s.sum(0) + u.opt_s.sum(0), ref, rtol=1e-12)
        p = predict_parallel(Scenario(model, H100), 256, Layout(), batch=16)
        assert p.time_per_step_s == pytest.approx(ref[0], rel=1e-12)


# -- kernel parallelism ----------------------------------------------------------------------
def test_persistent_rnn_switch_gains_only_when_weights_fit():
    # on chip: 132 SMs x (256 + 228) KiB x 0.75 = 49,065,984 bytes; an LSTM's recurrent weights are
    # 4 h^2 x 4 B, so h <= sqrt(49,065,984 / 16) = 1751
    assert onchip_bytes(H100, KernelOptions()) == 132 * (256 + 228) * 1024 * 0.75
    on = ParallelOptions(kernel=KernelOptions(persistent_rnn=True))
    small_off = predict_parallel(Scenario("wordlm", H100), 1024, Layout(), batch=32)
    small_on = predict_parallel(Scenario("wordlm", H100, options=on), 1024, Layout(), batch=32)
    assert small_on.persistent_rnn_active and small_on.time_per_step_s < small_off.time_per_step_s
    big_off = predict_parallel(Scenario("wordlm", H100), 2048, Layout(), batch=32)
    big_on = predict_parallel(Scenario("wordlm", H100, options=on), 2048, Layout(), batch=32)
    assert not big_on.persistent_rnn_active and big_on.time_per_step_s == big_off.time_per_step_s
    # splitting the hidden units over tp = 2 halves the weights per device: 2048 fits again
    tp_on = predict_parallel(Scenario("wordlm", H100, options=on), 2048, Layout(tp=2), batch=32)
    assert tp_on.persistent_rnn_active


def test_streams_overlap_the_two_directions_of_a_bidirectional_lstm():
    on = ParallelOptions(kernel=KernelOptions(streams=True))
    off = predict_parallel(Scenario("speech", H100), 512, Layout(), batch=8)
    with_streams = predict_parallel(Scenario("speech", H100, options=on), 512, Layout(), batch=8)
    assert with_streams.time_per_step_s < off.time_per_step_s
    # never faster than half: two identical directions can at best run fully in parallel
    rnn = [k for k in off.unit_time_per_micro_batch_s if k.startswith("rnns/")]
    serial = sum(off.unit_time_per_micro_batch_s[k] for k in rnn)
    together = sum(with_streams.unit_time_per_micro_batch_s[k] for k in rnn)
    assert serial / 2 <= together < serial
    # charlm has no independent kernels: no change
    assert predict_parallel(Scenario("charlm", H100, options=on), 256, Layout()).time_per_step_s == \
        predict_parallel(Scenario("charlm", H100), 256, Layout()).time_per_step_s


# -- layouts that cannot run -----------------------------------------------------------------
@pytest.mark.parametrize("layout,batch,devices,message", [
    (Layout(dp=8), 250, None, "not divisible by dp x micro-batches = 8 x 1 = 8"),
    (Layout(dp=4, micro_batches=4), 40, None, "not divisible by dp x micro-batches"),
    (Layout(dp=4, tp=4), 32, 8, "needs dp\\*tp\\*pp = 16 devices, more than --devices 8"),
    (Layout(dp=0), 32, None, "dp=0 is not allowed"),
])
def test_check_layout_errors(layout, batch, devices, message):
    with pytest.raises(PerfmodelError, match=message):
        check_layout(layout, batch, devices)


def test_invalid_splits_are_errors():
    with pytest.raises(PerfmodelError, match="tp=8 is not allowed for transformer at width 256"):
        predict_parallel(Scenario("transformer", H100, {"layers": 2, "seq_len": 64}), 256, Layout(tp=8))   # 4 heads
    with pytest.raises(PerfmodelError, match="pp=8 is not allowed: the model has only 5 layer units"):
        predict_parallel(Scenario("wordlm", H100), 512, Layout(pp=8), batch=32)
    with pytest.raises(PerfmodelError, match="needs more devices than --devices 4"):
        resolve_layout(4, None, 8, 1, 1)
    assert resolve_layout(64, None, 8, 2, 1) == Layout(4, 8, 2, 1)


def test_layout_that_does_not_fit_is_marked():
    titan = hardware.load("TitanX-Maxwell")
    p = predict_parallel(Scenario("wordlm", titan), 8192, Layout(), batch=64)
    assert not p.fits_in_memory and p.step.per_device_memory_bytes > titan.memory_capacity_bytes
    assert OpKind.RNN  # (the op IR is shared with the single-device model)
