"""Transformers as trained today: Llama blocks, grouped-query attention, fused and flash attention, MoE.

FLOP convention (perfmodel.ops): 2 FLOPs per multiply-add, as PyTorch's ``FlopCounterMode``.
``FlopCounterMode`` counts matmul-class aten ops only (mm, addmm, bmm, baddbmm, SDPA), so it is
compared with the graph's GEMM FLOPs (without addmm's bias add, which it does not count) plus
the GEMM part of the FlashAttention op (:func:`perfmodel.ops_flash.flash_flops`).

SDPA on the CPU.  ``F.scaled_dot_product_attention`` runs
``aten::_scaled_dot_product_flash_attention_for_cpu``, which has no FlopCounterMode formula in
torch 2.13 (it counts 0); the tests map it, and its backward, to torch's own SDPA formulas
(``sdpa_flop_count``: 2 GEMMs forward; ``sdpa_backward_flop_count``: 5 GEMMs backward, the
recomputed ``Q K^T`` included).  Those formulas count the full T x T square whatever
``is_causal`` says.  perfmodel counts the tiles FlashAttention-2 computes: for causal attention
the key tiles above the diagonal are skipped, so its attention FLOPs are ``f`` times torch's
with ``f = scores / T^2`` (:func:`perfmodel.ops_flash.tile_counts`); at T <= tile (128) f = 1
and the counts agree exactly, at T = 512 f = 10/16.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.utils.flop_counter as fc
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from perfmodel.architectures import build_graph
from perfmodel.architectures.attention import FLASH_TILE
from perfmodel.cli import main as cli
from perfmodel.ops import Op, OpKind
from perfmodel.ops_flash import flash_flops, tile_counts
from perfmodel.torchmodels import build_module

aten = torch.ops.aten


def _cpu_sdpa(q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_flop_count(q, k, v)


def _cpu_sdpa_bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return fc.sdpa_backward_flop_count(grad_out, q, k, v)


CPU_SDPA = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_bwd}
SMALL = {"batch": 2, "seq_len": 16, "layers": 2, "vocab": 300}


def matmul_flops(ops):
    """What FlopCounterMode counts, graph side: GEMMs without the bias add, flash attention's GEMMs."""
    out = 0
    for op in ops:
        if op.kind == OpKind.GEMM:
            out += replace(op, attrs={**op.attrs, "bias": False}).total_flops
        elif op.kind == OpKind.ATTENTION:
            out += flash_flops(op)[0] * op.repeat
    return out


def torch_flops(module, mapping=CPU_SDPA):
    """(forward, backward) FLOPs of one training step under FlopCounterMode."""
    torch.manual_seed(0)
    x, y = module.example_batch("cpu", torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False, custom_mapping=mapping) as fwd:
        loss = module.loss(x, y)
    with FlopCounterMode(display=False, custom_mapping=mapping) as bwd:
        loss.backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
def llama_params(w, layers, heads, kv_heads, ffn, vocab):
    """Embedding + untied head 2 V w; per layer qkv w (h + 2 kv) d, proj w^2, SwiGLU 3 w ffn, 2 RMSNorm
    weights; final RMSNorm w (Meta's ``llama/model.py``: no biases)."""
    d = w // heads
    return 2 * vocab * w + layers * (w * (heads + 2 * kv_heads) * d + w * w + 3 * w * ffn + 2 * w) + w


def test_llama_gqa_param_count_arithmetic_and_torch():
    """width 256, heads 8 (d 32), kv_heads 2: qkv 256 x (8 + 4) * 32 = 256 x 384; ffn default
    int(8 * 256 / 3) = 682 rounded up to a multiple of 256 = 768."""
    knobs = {"block": "llama", "heads": 8, "kv_heads": 2, **SMALL}
    graph = build_graph("transformer", 256, **knobs)
    assert graph.config["ffn"] == 768
    expected = 2 * 300 * 256 + 2 * (256 * 384 + 256 * 256 + 3 * 256 * 768 + 2 * 256) + 256
    assert expected == llama_params(256, 2, 8, 2, 768, 300) == 1_662_208
    assert graph.params == expected == sum(p.numel() for p in build_module("transformer", 256, **knobs).parameters())


@pytest.mark.parametrize("width,layers,heads,kv_heads,ffn,vocab,published", [
    # Llama-2-7B (Touvron et al. 2023b, arXiv:2307.09288; HF meta-llama/Llama-2-7b-hf num_parameters())
    (4096, 32, 32, None, None, 32000, 6_738_415_616),
    # Llama-3-8B (HF meta-llama/Meta-Llama-3-8B: 8 K/V heads, ffn 14336, vocab 128256)
    (4096, 32, 32, 8, 14336, 128256, 8_030_261_248),
])
def test_published_llama_param_counts(width, layers, heads, kv_heads, ffn, vocab, published):
    """Llama-2-7B's default ffn is Meta's rule: int(8 * 4096 / 3) = 10922 -> 11008."""
    graph = build_graph("transformer", width, block="llama", layers=layers, heads=heads, kv_heads=kv_heads,
                        ffn=ffn, vocab=vocab, batch=1, seq_len=16)
    assert graph.params == published == llama_params(width, layers, heads, kv_heads or heads,
                                                     graph.config["ffn"], vocab)


@pytest.mark.parametrize("block", ["gpt2", "llama"])
def test_moe_param_count_counts_all_experts(block):
    """Per MoE layer: router w E (no bias) + E experts; GPT-2 experts w*4w + 4w + 4w*w + w each,
    Llama experts w * 2 ffn + ffn * w each (ffn 256 at width 64: int(170.67) = 170 -> 256)."""
    w, e = 64, 4
    knobs = {"block": block, "heads": 4, "experts": e, "top_k": 2, **SMALL}
    graph = build_graph("transformer", w, **knobs)
    module = build_module("transformer", w, **knobs)
    expert = (w * 4 * w + 4 * w + 4 * w * w + w) if block == "gpt2" else (w * 2 * 256 + 256 * w)
    layer0 = {k: v for k, v in graph.param_groups.items() if k.startswith("blocks/0/mlp/")}
    assert sum(layer0.values()) == w * e + e * expert
    assert graph.params == sum(p.numel() for p in module.parameters())
    named = dict(module.named_parameters())
    for path, count in graph.param_groups.items():
        prefix = path.replace("/", ".") + "."
        assert count == sum(p.numel() for n, p in named.items() if n.startswith(prefix)), path


# --------------------------------------------------------------------------
# FLOPs vs FlopCounterMode
# --------------------------------------------------------------------------
@pytest.mark.parametrize("knobs", [
    {"block": "llama", "heads": 8, "kv_heads": 2},                        # flash (default), GQA
    {"block": "llama", "heads": 8, "kv_heads": 2, "attention": "naive"},
    {"block": "llama", "heads": 8, "attention": "fused"},
    {"heads": 4, "attention": "flash"},                                   # GPT-2 block, SDPA
    {"heads": 4, "kv_heads": 2, "attention": "fused"},
    {"heads": 4, "experts": 4, "top_k": 2},                               # GPT-2 experts, capacity 1.25
    {"block": "llama", "heads": 8, "kv_heads": 4, "experts": 4, "top_k": 1, "capacity": 1.0},
], ids=["llama-flash-gqa", "llama-naive-gqa", "llama-fused", "gpt2-flash", "gpt2-fused-gqa", "gpt2-moe",
        "llama-moe-top1"])
def test_step_flops_match_flop_counter_exactly(knobs):
    """T = 16 <= tile: flash computes every tile, so the counts agree exactly.  The MoE expert GEMMs
    run on the padded [E, C, w] buffer in both, whatever the routing."""
    knobs = {**knobs, **SMALL}
    graph = build_graph("transformer", 256, **knobs)
    fwd, bwd = torch_flops(build_module("transformer", 256, **knobs))
    assert matmul_flops(graph.fwd) == fwd
    assert matmul_flops(graph.step_ops()) == fwd + bwd


def test_flop_counter_counts_cpu_flash_attention_as_zero():
    """Without the mapping, FlopCounterMode misses the attention GEMMs of the flash path entirely."""
    knobs = {"block": "llama", "heads": 8, **SMALL}
    graph = build_graph("transformer", 256, **knobs)
    fwd, bwd = torch_flops(build_module("transformer", 256, **knobs), mapping={})
    attention = sum(flash_flops(op)[0] for op in graph.step_ops() if op.kind == OpKind.ATTENTION)
    assert attention > 0 and matmul_flops(graph.step_ops()) - attention == fwd + bwd


def test_causal_flash_skips_tiles_above_the_diagonal():
    """T = 512, tile 128: nb = 4 query tiles; causal visits 1 + 2 + 3 + 4 = 10 of the 16 tiles, so
    perfmodel's attention FLOPs are 10/16 of FlopCounterMode's full-square SDPA count:
    forward 4 T^2 d per head (Q K^T, P V), backward 10 T^2 d (the recomputed Q K^T, dV, dP, dQ, dK)."""
    b, t, h, d, L = 1, 512, 2, 32, 1
    knobs = {"block": "llama", "heads": h, "batch": b, "seq_len": t, "layers": L, "vocab": 64}
    graph = build_graph("transformer", h * d, **knobs)
    fwd, bwd = torch_flops(build_module("transformer", h * d, **knobs))
    f = tile_counts(t, FLASH_TILE, True)[0] / t ** 2
    assert f == 10 / 16
    sdpa_fwd, sdpa_bwd = 4 * b * h * t * t * d * L, 10 * b * h * t * t * d * L   # torch's full-square formulas
    assert matmul_flops(graph.fwd) == fwd - (1 - f) * sdpa_fwd
    assert matmul_flops(graph.step_ops()) == fwd + bwd - (1 - f) * (sdpa_fwd + sdpa_bwd)


@pytest.mark.parametrize("t,tile", [(512, 128), (300, 128), (100, 128), (129, 64), (1, 128)])
def test_tile_counts_by_enumeration(t, tile):
    """Scores, K/V rows and Q rows visited, summed tile by tile (Dao 2023, Algorithms 1 and 2)."""
    starts = range(0, t, tile)
    rows = [min(tile, t - s) for s in starts]
    pairs = [(i, j) for i in range(len(rows)) for j in range(len(rows)) if j <= i]
    scores = sum(rows[i] * rows[j] for i, j in pairs)
    kv_rows = sum(rows[j] for i, j in pairs)
    q_rows = sum(rows[i] for i, j in pairs)
    assert tile_counts(t, tile, True) == (scores, kv_rows, q_rows)
    assert tile_counts(t, tile, False) == (t * t, len(rows) * t, len(rows) * t)


def test_flash_bytes_by_hand():
    """One sequence, one head, T 256, d 64, tile 128, causal, fp16.
    Forward (Algorithm 1): Q once 256*64, K and V for query tiles 0 (128 rows) and 1 (256 rows):
    2 * 384 * 64; writes O 256*64 (2 B) and L 256 (fp32)."""
    op = Op(OpKind.ATTENTION, "a", {"batch": 1, "heads": 1, "kv_heads": 1, "seq": 256, "head_dim": 64,
                                    "tile": 128}, "fp16", attrs={"causal": True})
    read = (256 * 64 + 2 * 384 * 64) * 2
    written = 256 * 64 * 2 + 256 * 4
    assert op.bytes == read + written and op.out_bytes == written
    assert flash_flops(op) == (4 * (128 * 128 + 256 * 128) * 64, 5 * (128 * 128 + 256 * 128))


def test_flash_triton_is_flash_at_the_triton_kernels_rate():
    """attention=flash_triton has FlashAttention-2's ops, FLOPs, bytes and memory; its compute runs at
    1/1.4 of the rate forward and 1/2 backward (Dao 2023 sec. 4.1: FlashAttention-2 is 1.3-1.5x faster
    than FlashAttention in Triton forward, about 2x backward).  H100: the GEMM FLOPs of one phase at
    989.4 TFLOP/s x attention_max 0.34, times 1.4 or 2."""
    from perfmodel import hardware
    from perfmodel.cost.roofline import attention_compute_s
    hw = hardware.load("H100-SXM5")
    knobs = {"block": "llama", "heads": 8, "batch": 2, "seq_len": 1024, "layers": 1, "vocab": 64}
    ops = {a: [o for o in build_graph("transformer", 1024, attention=a, dtype="bf16", **knobs).step_ops()
               if o.kind == OpKind.ATTENTION] for a in ("flash", "flash_triton")}
    assert [(o.phase, o.flops, o.bytes) for o in ops["flash"]] == [(o.phase, o.flops, o.bytes)
                                                                   for o in ops["flash_triton"]]
    for fa2, tri in zip(ops["flash"], ops["flash_triton"], strict=True):
        base = flash_flops(fa2)[0] / (989.4e12 * 0.34)
        assert attention_compute_s(fa2, hw) == pytest.approx(base)
        assert attention_compute_s(tri, hw) == pytest.approx(base * (1.4 if tri.phase == "fwd" else 2))
    tri = build_graph("transformer", 1024, attention="flash_triton", **knobs)
    assert tri.activation_bytes() == build_graph("transformer", 1024, attention="flash", **knobs).activation_bytes()


# --------------------------------------------------------------------------
# Activation memory: no T x T term for flash, one for fused, two for naive
# --------------------------------------------------------------------------
@pytest.mark.parametrize("attention,tt_tensors", [("flash", 0), ("fused", 1), ("naive", 2)])
def test_attention_activation_bytes_t_squared_term(attention, tt_tensors):
    """At fixed tokens (8 x 64 = 1 x 512) every Llama activation scales with tokens except the saved
    T x T tensors: naive keeps scores and probabilities, fused the probabilities, flash none (only O
    and the log-sum-exp, O(T d))."""
    h, layers = 4, 2
    act = {b: build_graph("transformer", 256, block="llama", attention=attention, heads=h, layers=layers,
                          batch=b, seq_len=512 // b, vocab=300).activation_bytes() for b in (1, 8)}
    assert act[1] - act[8] == tt_tensors * layers * h * 4 * (1 * 512 ** 2 - 8 * 64 ** 2)


# --------------------------------------------------------------------------
# Sweeps, expert-parallel annotations, defaults
# --------------------------------------------------------------------------
@pytest.mark.parametrize("knobs", [{"block": "llama", "kv_heads": 2}, {"block": "llama", "experts": 8},
                                   {"attention": "fused", "experts": 4, "top_k": 1}])
def test_vectorized_widths_match_scalar_builds(knobs):
    widths = np.array([256, 512, 1024])
    graph = build_graph("transformer", widths, layers=2, **knobs)
    flops = sum(op.total_flops for op in graph.step_ops())
    for i, w in enumerate(widths):
        one = build_graph("transformer", int(w), layers=2, **knobs)
        assert graph.params[i] == one.params
        assert flops[i] == sum(op.total_flops for op in one.step_ops())


def test_moe_ops_carry_what_expert_parallelism_needs():
    """N = 2 * 16 = 32 tokens, E 4, k 2, capacity 1.25: C = ceil(1.25 * 2 * 32 / 4) = 20 per expert;
    dispatch and combine move k * width * 4 B = 512 B per token (fp32)."""
    graph = build_graph("transformer", 64, heads=4, experts=4, top_k=2, **SMALL)
    assert graph.config["tokens_per_expert"] == 20
    ops = {op.path: op for op in graph.fwd if op.path.startswith("blocks/0/mlp/")}
    for name in ("experts/fc", "experts/proj"):
        op = ops[f"blocks/0/mlp/{name}"]
        assert op.meta["moe"]["role"] == "expert" and op.dims["batch"] == 4 and op.dims["m"] == 20
    for name in ("dispatch", "combine"):
        assert ops[f"blocks/0/mlp/{name}"].meta["moe"]["bytes_per_token"] == 2 * 64 * 4
    assert ops["blocks/0/mlp/dispatch"].dims["numel"] == 4 * 20 * 64


def test_gpt2_defaults_keep_their_config_and_kernels():
    graph = build_graph("transformer", 256)
    assert set(graph.config) == {"width", "batch", "seq_len", "layers", "heads", "vocab"}
    assert not any(op.kind == OpKind.ATTENTION for op in graph.fwd)
    llama = build_graph("transformer", 256, block="llama")
    assert llama.config["attention"] == "flash" and llama.config["kv_heads"] == 4


@pytest.mark.parametrize("sets,needle", [
    (["kv_heads=3"], "kv_heads=3 is not allowed for model 'transformer': it must divide heads=4"),
    (["experts=4", "top_k=5"], "top_k=5 is not allowed for model 'transformer': it must be between 1 and experts=4"),
    (["experts=4", "top_k=0"], "top_k='0' for model 'transformer' must be an integer >= 1"),
    (["top_k=2"], "top_k needs a mixture of experts"),
    (["attention=sdpa"], "attention='sdpa' is not allowed for model 'transformer'; allowed: naive, fused, flash"),
    (["block=bert"], "block='bert' is not allowed for model 'transformer'; allowed: gpt2, llama"),
    (["ffn=0"], "ffn='0' for model 'transformer' must be an integer >= 1"),
    (["experts=4", "capacity=0"], "capacity='0' for model 'transformer' must be a number > 0"),
    (["experts=4", "capacity=-1.5"], "capacity='-1.5' for model 'transformer' must be a number > 0"),
])
def test_bad_knobs_exit_2_with_one_line(sets, needle):
    args = ["predict", "--model", "transformer", "--width", "256"]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and needle in res.output


def test_llama_flash_under_tensor_parallelism():
    """The flash op splits its heads (and K/V heads) over the tensor-parallel devices."""
    res = CliRunner().invoke(cli, ["predict", "--model", "transformer", "--width", "512", "--set", "block=llama",
                                   "--set", "kv_heads=2", "--tp", "2", "--hardware", "H100-SXM5", "--json"])
    assert res.exit_code == 0, res.output


def test_every_op_kind_is_priced_once_the_builders_are_imported():
    """OpKind.ATTENTION's cost and backward rule live in perfmodel.ops_flash, which the builders and the
    roofline import: no kind may be left without a cost function or a backward rule."""
    import perfmodel.architectures  # noqa: F401
    import perfmodel.cost.roofline  # noqa: F401
    from perfmodel.ops import ALL_KINDS, BACKWARD_RULES, COST_TABLE
    missing = [k for k in ALL_KINDS if k not in COST_TABLE or (k != OpKind.OPTIMIZER and k not in BACKWARD_RULES)]
    assert missing == []
