"""ZeRO stages, sequence parallelism, recompute modes, interleaved pipelines, expert parallelism and the
layout search over them (issue "Transformers as they are trained today", parts 4-5).

Formulas: Rajbhandari et al. 2020 (ZeRO) sec. 3.1 and 5; Korthikanti et al. 2022 sec. 4-5; Narayanan
et al. 2021 sec. 2.2.2; Thakur et al. 2005 (ring and pairwise-exchange collectives).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel import hardware
from perfmodel.cli import main as cli
from perfmodel.cost.memory import parameter_memory
from perfmodel.parallel import collectives as coll
from perfmodel.parallel.device import build_fwd
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.options import ParallelOptions
from perfmodel.parallel.pipeline import in_flight, schedule_time
from perfmodel.parallel.search import SearchSpace, plan
from perfmodel.parallel.search_options import OptionSearch
from perfmodel.parallel.step import predict_parallel
from perfmodel.parallel.tensor import split
from perfmodel.parallel.zero import dp_comm_s
from perfmodel.scenario import Scenario
from perfmodel.total import load_law, shipped_law_path

H100 = hardware.load("H100-SXM5")
GPT = {"layers": 4, "heads": 16, "seq_len": 512, "vocab": 8192, "attention": "fused"}


def _predict(knobs, width=1024, layout=None, batch=32, **opts):
    s = Scenario("transformer", H100, knobs, "bf16", "adam", ParallelOptions(**opts))
    return predict_parallel(s, width, layout or Layout(4, 2, 1, 2), batch)


# -- ZeRO ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zero,weights,grads,opt", [(0, 2 + 4, 2, 8), (1, 2, 2, 12 / 8), (2, 2, 2 / 8, 12 / 8),
                                                     (3, 2 / 8, 2 / 8, 12 / 8)])
def test_zero_memory_is_2_2_12_over_the_sharding(zero, weights, grads, opt):
    """ZeRO sec. 3.1: 16-bit weights and gradients (2 + 2 bytes) and K = 12 bytes of fp32 master weights,
    momentum and variance per parameter; stage 0 counts the master copy with the weights (16 in all)."""
    m = parameter_memory(1000, "bf16", "adam", zero=zero, dp=8)
    assert (m.weights_bytes, m.gradients_bytes, m.optimizer_bytes) == pytest.approx((1000 * weights, 1000 * grads,
                                                                                     1000 * opt))


def test_zero_communication_bytes():
    """Ring, latency 0, overlap off, S bytes over N = 8: all-reduce 2(N-1)/N S beta = reduce-scatter +
    all-gather, so stage 1 moves what stage 0 moves; stage 2 reduce-scatters every micro-batch (m = 3:
    (3 + 1) (N-1)/N S beta); stage 3 gathers twice and reduce-scatters once per micro-batch
    (m = 2: 6 (N-1)/N S beta)."""
    ln, s, n = coll.Link(0.0, 1e-9), 4e9, 8
    one = (n - 1) / n * s * 1e-9
    args = dict(param_bytes=s, fwd_s=0.1, bwd_s=0.2, units=10, dp=n, ln=ln, algorithm="ring", bucket_bytes=2**25,
                overlap=False)
    assert dp_comm_s(0, m=1, **args)[0] == pytest.approx(2 * one)
    assert dp_comm_s(1, m=1, **args)[0] == pytest.approx(2 * one)
    assert dp_comm_s(2, m=3, **args)[0] == pytest.approx(4 * one)
    assert dp_comm_s(3, m=2, **args)[0] == pytest.approx(6 * one)
    # DeepSpeed's BF16_Optimizer under its pipeline engine: the whole gradients all-reduced (2 x one),
    # then the updated shards all-gathered (1 x one)
    assert dp_comm_s(1, m=1, **args, zero1_allreduce=True)[0] == pytest.approx(3 * one)
    total, exposed = dp_comm_s(3, m=2, **{**args, "overlap": True, "fwd_s": 10.0, "bwd_s": 20.0})
    # prefetched: only the first unit's gather and the last unit's reduce-scatter stay out (compute > comm)
    assert exposed == pytest.approx(2 * (one / 10 + one / 10)) and exposed < total


def test_zero_shards_the_optimizer_step_and_memory():
    base, z1, z3 = (_predict(GPT, zero=z).step for z in (0, 1, 3))
    assert z1.optimizer_s == pytest.approx(base.optimizer_s / 4)           # dp = 4
    assert z3.memory_optimizer_bytes == pytest.approx(base.memory_optimizer_bytes * 12 / 8 / 4)
    assert z3.per_device_memory_bytes < z1.per_device_memory_bytes < base.per_device_memory_bytes


def test_tied_head_on_another_stage_keeps_a_copy_and_all_reduces_its_gradient():
    """GPT-2's LM head reuses wte (V x h = 8192 x 1024, split over tp = 2: 4,194,304 per device).  Over
    pp = 2 the head's stage keeps a copy, and after backward the copies' gradients are all-reduced between
    the two stages: a 2-rank ring, 2 x (2-1)/2 x S x beta + 2 alpha with S = 4,194,304 x 2 bytes (bf16);
    with dp = 1 that is all the data-parallel communication.  Llama's untied head has no copy."""
    from perfmodel.parallel.device import device_pass
    from perfmodel.parallel.pipeline import partition
    s = Scenario("transformer", H100, GPT, "bf16", "adam", ParallelOptions())
    units = device_pass(s, np.array([1024]), 2, 2)
    st = partition(units, 2)
    copy = 8192 * 1024 / 2
    assert st.tied_params[:, 0] == pytest.approx([copy, copy])
    untied = partition(dataclasses.replace(units, tied=()), 2)      # the same units without the tie
    assert st.params[1, 0] - untied.params[1, 0] == pytest.approx(copy)   # the head's stage holds the copy
    assert st.params[0, 0] == untied.params[0, 0] and not untied.tied_params.any()
    r = _predict(GPT, layout=Layout(1, 2, 2, 16)).step
    link = coll.link(H100, False)                        # 2 stages x tp 2 = 4 devices: one node
    assert r.dp_allreduce_s == pytest.approx(coll.allreduce_s(copy * 2, 2, link, "ring"))
    assert r.dp_allreduce_s == pytest.approx(2 * link.alpha_s + copy * 2 * link.beta_s_per_byte)
    llama = partition(device_pass(Scenario("transformer", H100, {**GPT, "block": "llama"}, "bf16", "adam",
                                           ParallelOptions()), np.array([1024]), 2, 2), 2)
    assert not llama.tied_params.any()


def test_full_recompute_checkpoints_the_hidden_state_not_the_dropout_mask():
    """Korthikanti et al. 2022 sec. 5: full recomputation keeps each layer's input, 2 s b h bytes in 16 bits.
    With hidden dropout the residual kernel also writes a 1-byte mask (1.5 outputs, sec. 4.1), which it
    keeps for its own backward but does not hand on: s = 512, b = 2, h = 1024 -> 2,097,152 bytes per block."""
    from perfmodel.parallel.device import device_pass
    s = Scenario("transformer", H100, {**GPT, "dropout": 0.1}, "bf16", "adam", ParallelOptions())
    units = device_pass(s, np.array([1024]), 2, 1)
    for i in range(4):
        assert units.out_bytes[units.names.index(f"blocks/{i}"), 0] == 512 * 2 * 1024 * 2


def test_checkpointing_every_second_block_reruns_those_and_keeps_the_rest():
    """torchtitan's "selective layer" AC (ac_freq 2) checkpoints blocks 0 and 2 of 4: backward reruns their
    forward (compute and FLOPs added), they keep only their output, the peak is one of them recomputed,
    and the other blocks (and the embedding, head, loss) keep all their activations."""
    from perfmodel.parallel.device import device_pass
    from perfmodel.parallel.pipeline import partition
    units = device_pass(Scenario("transformer", H100, GPT, "bf16", "adam", ParallelOptions()), np.array([1024]), 2, 1)
    none, half = partition(units, 1, "none"), partition(units, 1, "full", every=2)
    ck = [units.names.index(f"blocks/{i}") for i in (0, 2)]
    assert half.bwd_s[0, 0] - none.bwd_s[0, 0] == pytest.approx(sum(units.fwd_s[i, 0] for i in ck))
    assert half.flops[0, 0] - none.flops[0, 0] == pytest.approx(sum(units.fwd_flops[i, 0] for i in ck))
    kept = sum(units.act_bytes[i, 0] - units.out_bytes[i, 0] for i in ck)
    assert half.act_bytes[0, 0] == pytest.approx(none.act_bytes[0, 0] - kept)
    assert half.act_peak_bytes[0, 0] == pytest.approx(max(units.act_bytes[i, 0] for i in ck))
    assert partition(units, 1, "full", every=1).act_bytes[0, 0] == pytest.approx(units.out_bytes[:, 0].sum())
    with pytest.raises(Exception, match="--recompute-every 0 is not allowed"):
        ParallelOptions(recompute_every=0).check()


def test_zero3_gathers_two_units_under_fsdp_and_two_modules_under_deepspeed():
    """ZeRO-3 holds the parameters it computes with and those it prefetches, gathered in full: FSDP wraps
    each transformer block (12 h^2 + 13 h: qkv, proj, fc, proj weights and biases, two LayerNorms),
    DeepSpeed fetches one module at a time (the largest here: the token embedding, V x h = 8192 x 1024,
    above the MLP's fc, h x 4h + 4h).  h = 1024, bf16: the difference is 2 x (block - V h) x 2 bytes."""
    block, wte = 12 * 1024 ** 2 + 13 * 1024, 8192 * 1024
    assert wte > 1024 * 4096 + 4096
    unit, module = (_predict(GPT, layout=Layout(8, 1, 1, 1), zero=3, zero3_gather=g).step for g in ("unit", "module"))
    assert unit.memory_weights_bytes - module.memory_weights_bytes == pytest.approx(2 * (block - wte) * 2)
    assert unit.time_per_step_s == module.time_per_step_s
    with pytest.raises(Exception, match="gather granularity 'layer' is not allowed; allowed: unit, module"):
        ParallelOptions(zero3_gather="layer").check()


# -- sequence parallelism ---------------------------------------------------------------------------

def test_sequence_parallel_replaces_each_allreduce_by_reduce_scatter_and_all_gather():
    g = build_fwd("transformer", np.array([1024]), np.array([2]), "bf16", GPT)
    plain, sp = split(g, np.array([4])), split(g, np.array([4]), sequence_parallel=True)

    def bytes_of(ts, kind):
        return sum(float(np.sum(c.nbytes)) for it in ts.items for c in it.comm if c.kind == kind)

    ce = float(np.sum(next(c.nbytes for it in plain.items for c in it.comm if it.path == "loss")))
    assert bytes_of(sp, "allreduce") == pytest.approx(ce)                  # only the loss statistics stay
    for kind in ("reducescatter", "allgather"):
        assert bytes_of(sp, kind) == pytest.approx(bytes_of(plain, kind) + bytes_of(plain, "allreduce") - ce)

    def norm(ts):
        return next(o for it in ts.items for o in it.ops if o.path == "blocks/0/ln1")

    assert np.all(norm(sp).dims["numel"] * 4 == norm(plain).dims["numel"])  # tokens split over t = 4


def test_sequence_parallel_same_ring_time_less_work_and_memory():
    plain, sp = _predict(GPT).step, _predict(GPT, sequence_parallel=True).step
    assert sp.tp_comm_s == pytest.approx(plain.tp_comm_s)                  # same bytes on a ring
    assert sp.time_per_step_s < plain.time_per_step_s
    assert sp.memory_activations_bytes < plain.memory_activations_bytes


# -- recompute modes ------------------------------------------------------------------------------

def test_recompute_modes_order_time_and_memory():
    r = {m: _predict(GPT, recompute=m).step for m in ("none", "selective", "full")}
    assert r["none"].time_per_step_s < r["selective"].time_per_step_s < r["full"].time_per_step_s
    assert r["none"].memory_activations_bytes > r["selective"].memory_activations_bytes \
        > r["full"].memory_activations_bytes
    assert ParallelOptions(recompute=True).recompute == "full" and ParallelOptions(recompute=False).recompute == "none"


# -- interleaved 1F1B -----------------------------------------------------------------------------

@pytest.mark.parametrize("p,m,v", [(4, 8, 1), (4, 8, 2), (8, 16, 4)])
def test_interleaved_bubble_is_p_minus_1_over_v_m(p, m, v):
    """Balanced stages of tau seconds, no sends: T = m tau + (p - 1) tau / V (Narayanan sec. 2.2.2)."""
    tau = 0.01
    t, _ = schedule_time(np.full((p, 1), tau), np.zeros(1), m, 1, False, v)
    assert (t[0] - m * tau) / (m * tau) == pytest.approx((p - 1) / (v * m))


def test_interleaving_sends_v_times_as_much():
    """A send of c > tau / V per item: the beat is V c instead of tau."""
    tau, c, p, m, v = 0.01, 0.004, 4, 8, 4
    t, _ = schedule_time(np.full((p, 1), tau), np.array([c]), m, 1, False, v)
    assert t[0] == pytest.approx((m - 1) * v * c + tau + (p - 1) * tau / v + (p - 1) * c)
    # activations held: min(m, p) (1 + (p - 1) / (p V)) micro-batches (Korthikanti sec. 4.2.3)
    assert in_flight(m, p, "1f1b", v) == pytest.approx(4 * (1 + 3 / 16))


def test_virtual_stages_in_a_prediction():
    lay = Layout(1, 2, 4, 8)
    one, two = (_predict({**GPT, "layers": 8}, layout=lay, batch=16, virtual_stages=v).step for v in (1, 2))
    assert two.bubble_fraction < one.bubble_fraction
    assert two.memory_activations_bytes > one.memory_activations_bytes


# -- expert parallelism ---------------------------------------------------------------------------

MOE = {"layers": 2, "heads": 8, "seq_len": 256, "vocab": 4096, "block": "llama", "experts": 8, "top_k": 2}


def test_expert_parallel_divides_expert_weights_and_adds_four_all_to_alls_per_layer():
    lay = Layout(4, 1, 1, 1)
    one, four = (_predict(MOE, 512, lay, 16, ep=e) for e in (1, 4))
    # expert weights per layer: 8 experts x (512 x 2 x 1536 + 1536 x 512) = 18,874,368; with ep = 4 a quarter
    experts = 2 * 8 * (512 * 2 * 1536 + 1536 * 512)
    assert one.step.memory_weights_bytes - four.step.memory_weights_bytes == pytest.approx(6 * experts * 3 / 4)
    # all-to-all of 4 sequences x 256 tokens x top_k 2 x 512 x 2 bytes per device, (3/4) of it leaves:
    # (ep - 1) alpha + (ep - 1)/ep S beta, twice forward and twice backward, in each of the 2 layers
    s = 4 * 256 * 2 * 512 * 2
    ln = coll.link(H100, False)
    assert four.step.ep_alltoall_s == pytest.approx(2 * 4 * (3 * ln.alpha_s + 3 / 4 * s * ln.beta_s_per_byte))
    assert one.step.ep_alltoall_s == 0
    # the expert FLOPs per device stay: each device's experts take the tokens of all 4 devices
    assert four.step.flops_per_device_step == pytest.approx(one.step.flops_per_device_step, rel=1e-9)


# -- command line ---------------------------------------------------------------------------------

BASE = ["predict", "--model", "transformer", "--width", "1024", "--hardware", "H100-SXM5", "--dtype", "bf16",
        "--optimizer", "adam", "--set", "layers=4", "--batch", "32", "--json"]


@pytest.mark.parametrize("args,needle", [
    (["--set", "experts=8", "--dp", "4", "--ep", "3"], "--ep 3 is not allowed: it must divide the experts"),
    (["--dp", "4", "--ep", "2"], "--ep 2 is not allowed for a dense model"),
    (["--zero", "3", "--pp", "2"], "--zero 3 with --pp 2 is not modelled"),
    (["--zero", "4"], "--zero 4 is not allowed; allowed: 0, 1, 2, 3"),
    (["--dp", "4", "--zero3-gather", "module"], "--zero3-gather module is not allowed with --zero 0"),
    (["--zero3-gather", "layer"], "Invalid value for '--zero3-gather': 'layer' is not one of 'unit', 'module'"),
    (["--recompute-every", "2"], "--recompute-every 2 is not allowed with --recompute none"),
    (["--recompute", "full", "--recompute-every", "0"], "--recompute-every 0 is not allowed; it must be an integer"),
    (["--pp", "2", "--virtual-stages", "3"], "--virtual-stages 3 is not allowed: it must divide the layers"),
    (["--recompute", "sometimes"], "unknown --recompute mode 'sometimes'; allowed: none, selective, full"),
])
def test_bad_options_exit_2_with_one_line(args, needle):
    res = CliRunner().invoke(cli, BASE + args)
    assert res.exit_code == 2
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,mode", [(["--recompute"], "full"), (["--recompute", "selective"], "selective"),
                                       (["--recompute", "--no-recompute"], "none"), (["--no-recompute"], "none")])
def test_recompute_flag_keeps_the_old_switch(args, mode):
    res = CliRunner().invoke(cli, BASE + ["--dp", "2"] + args, catch_exceptions=False)
    assert res.exit_code == 0 and json.loads(res.output)["options"]["recompute"] == mode


def test_plan_searches_the_options_when_asked():
    law = load_law(shipped_law_path("charlm"))
    s = Scenario("transformer", H100, GPT, "bf16", "adam")
    plain = plan(s, [512, 1024], SearchSpace(devices=16), 1e9, law)
    found = plan(s, [512, 1024], SearchSpace(devices=16, options=OptionSearch()), 1e9, law)
    assert "zero" not in plain.rows[0].to_dict()
    for a, b in zip(plain.rows, found.rows, strict=True):
        assert b.total_time_s <= a.total_time_s * (1 + 1e-9)        # a superset of the layouts
        assert b.recompute in ("none", "selective", "full") and b.zero in (0, 1, 2, 3)
        assert b.sequence_parallel == (b.tp > 1)


# -- blocking pipeline sends and the scatter/gather optimization ----------------------------------

def test_blocking_sends_add_to_every_beat():
    """Megatron-LM / DeepSpeed wait on every send before the next micro-batch (pipeline module
    docstring): the beat is tau + V c, not max(tau, V c).  p = 4, m = 8, tau = 10 ms, c = 4 ms:
    V = 1: (m - 1)(tau + c) + p tau + (p - 1) c = 7 x 14 + 40 + 12 = 150 ms;
    V = 2: (m - 1)(tau + 2c) + tau + (p - 1) tau / 2 + (p - 1) c = 126 + 10 + 15 + 12 = 163 ms."""
    tau, c, p, m = 0.010, 0.004, 4, 8
    stage = np.full((p, 1), tau)
    t1, _ = schedule_time(stage, np.array([c]), m, 1, False, 1, blocking=True)
    t2, _ = schedule_time(stage, np.array([c]), m, 1, False, 2, blocking=True)
    assert t1[0] == pytest.approx(0.150) and t2[0] == pytest.approx(0.163)
    # overlapped (the default of the function): max(tau, c) per beat
    t0, _ = schedule_time(stage, np.array([c]), m, 1, False, 1)
    assert t0[0] == pytest.approx(7 * 0.010 + 0.040 + 0.012)


def test_scatter_gather_sends_one_tp_slice_across_nodes():
    """Narayanan et al. 2021 sec. 4.1: each tp rank sends S/t over the inter-node link, the receiving
    group all-gathers S over NVLink: 2 x (p2p(S/t) + allgather(S, t)) per item."""
    from perfmodel import hardware
    from perfmodel.parallel import collectives as coll
    from perfmodel.parallel.pipeline import Stages
    from perfmodel.parallel.step import p2p_item_s
    hw = hardware.load("A100-SXM4-80GB")
    s = 2048 * 8192 * 2.0                      # one micro-batch's activation, bytes
    z = np.zeros((2, 1))
    st = Stages(*([z] * 10), np.array([[s], [0.0]]), z, z, z, z)
    inter, intra = coll.link(hw, True, "p2p"), coll.link(hw, False)
    whole = p2p_item_s(st, hw, 32, 8, 1, split=False)[0]
    split = p2p_item_s(st, hw, 32, 8, 1, split=True)[0]
    assert whole == pytest.approx(2 * coll.p2p_s(s, inter))
    assert split == pytest.approx(2 * (coll.p2p_s(s / 8, inter) + coll.allgather_s(s, 8, intra)))
    assert split < whole / 4
