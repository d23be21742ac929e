"""Decoder-only transformer: GPT-2 blocks (Radford et al. 2019) or Llama blocks (Touvron et al.
2023, arXiv:2302.13971), dense or mixture-of-experts MLPs, three attention implementations.

``block="gpt2"`` (default): token embedding + learned position embedding (``seq_len`` x width),
then ``layers`` pre-LayerNorm blocks::

    x = x + proj(attention(qkv(ln1(x))))       # causal multi-head self-attention
    x = x + fc2(gelu(fc1(ln2(x))))             # MLP, hidden ffn = 4 * width

a final LayerNorm and an LM head **tied** to the token embedding (logits = x @ wte^T, no bias;
the embedding matrix is counted once in ``params``).  No dropout unless ``dropout`` > 0 (the
residual adds then become fused bias-dropout-adds, and the naive and fused attention drop the
probabilities: Megatron-LM's GPT, default 0.1).  Defaults (width 768, 12
layers, 1024 positions, vocab 50257, the GPT-2 BPE vocabulary) give GPT-2 small, 124,439,808
parameters.

``block="llama"``: no position embedding (rotary embeddings on Q and K instead), RMSNorm with a
weight and no bias, no biases in any linear layer, a SwiGLU MLP (:mod:`.ffn`, hidden ``ffn``,
default ``8/3 * width`` rounded up to a multiple of 256), grouped-query attention with
``kv_heads`` K/V heads (default: ``heads``), and an **untied** LM head (``lm_head``:
``Linear(width, vocab, bias=False)``, counted apart from ``wte``).

``attention``: ``naive`` | ``fused`` | ``flash`` | ``flash_triton`` (:mod:`.attention`; default naive for gpt2,
flash for llama).  ``experts=E`` (with ``top_k``, ``capacity``) makes every MLP a mixture of E
experts of the block's MLP (:mod:`.moe`).

RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467) as torch 2.13 runs ``nn.RMSNorm`` (profiled on
CPU: a composite of 6 kernels): ``ln/stats`` (x^2, mean, + eps, rsqrt: 4 kernels, reads x and
x^2, writes x^2, nothing kept) and ``ln`` (x * r, * weight: 2 kernels, both outputs kept).

Not modelled: the one extra ``vocab x width`` add that autograd launches to sum the tied
weight's two gradients (embedding + LM head) of the GPT-2 block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PerfmodelError
from ..ops import OpKind
from .attention import ATTENTIONS, DROPOUT_OUTPUTS, check_kv_heads, self_attention
from .base import MAX_LAYERS, ArchSpec, Knob
from .ffn import default_ffn, dense_ffn
from .layers import GraphBuilder
from .moe import DEFAULT_CAPACITY, DEFAULT_TOP_K, expert_capacity, moe_ffn

HEAD_DIM_DEFAULT = 64  # head size when ``heads`` is not given (GPT-2, GPT-3)
BLOCKS = ("gpt2", "llama")
DEFAULT_ATTENTION = {"gpt2": "naive", "llama": "flash"}


def resolve_heads(width, heads=None):
    """Number of heads: ``heads``, or ``width // 64`` when None; width must divide evenly."""
    divisor = HEAD_DIM_DEFAULT if heads is None else heads
    w = np.asarray(width)
    bad = w % divisor != 0
    if np.any(bad):
        value = w[bad].ravel()[0] if w.ndim else w
        why = (f"a multiple of {HEAD_DIM_DEFAULT} (head size when heads is not given)" if heads is None
               else f"divisible by heads={heads}")
        raise PerfmodelError(f"width {int(value)} is not allowed for model 'transformer'; "
                             f"width must be {why}")
    return width // HEAD_DIM_DEFAULT if heads is None else heads


def _not_allowed(what: str, why: str) -> PerfmodelError:
    return PerfmodelError(f"{what} is not allowed for model 'transformer': {why}")


@dataclass(frozen=True)
class BlockConfig:
    """A block's choices with the defaults filled in (shared by the builder and the torch module)."""

    block: str
    attention: str
    heads: Any
    kv_heads: Any
    kv_given: bool        # kv_heads set: q, k, v projected and split as grouped heads
    ffn: Any
    ffn_given: bool
    experts: int | None   # None: dense MLP
    top_k: int | None
    capacity: float | None

    def config_entries(self, tokens) -> dict:
        """``graph.config`` entries beyond GPT-2's (so a GPT-2 prediction keeps its keys)."""
        out = {}
        if self.block != "gpt2" or self.attention != "naive":
            out.update(block=self.block, attention=self.attention)
        if self.block != "gpt2" or self.kv_given:
            out["kv_heads"] = self.kv_heads
        if self.block != "gpt2" or self.ffn_given:
            out["ffn"] = self.ffn
        if self.experts is not None:
            out.update(experts=self.experts, top_k=self.top_k, capacity=self.capacity,
                       tokens_per_expert=expert_capacity(tokens, self.experts, self.top_k, self.capacity))
        return out


def resolve_block(width, heads=None, block="gpt2", attention=None, kv_heads=None, ffn=None, experts=None,
                  top_k=None, capacity=None) -> BlockConfig:
    """Fill in the defaults and check the combination; bad values raise one-line PerfmodelErrors."""
    if block not in BLOCKS:
        raise _not_allowed(f"block={block!r}", f"allowed: {', '.join(BLOCKS)}")
    attention = DEFAULT_ATTENTION[block] if attention is None else attention
    if attention not in ATTENTIONS:
        raise _not_allowed(f"attention={attention!r}", f"allowed: {', '.join(ATTENTIONS)}")
    heads = resolve_heads(width, heads)
    if kv_heads is not None:
        check_kv_heads(heads, kv_heads)
    if ffn is not None and ffn < 1:
        raise _not_allowed(f"ffn={ffn!r}", "the MLP hidden size must be an integer >= 1")
    if capacity is not None and not capacity > 0:
        raise _not_allowed(f"capacity={capacity!r}", "the capacity factor must be a number > 0")
    for name, v in (("top_k", top_k), ("capacity", capacity)):
        if experts is None and v is not None:
            raise _not_allowed(f"{name}={v}", f"{name} needs a mixture of experts (set experts=E)")
    if experts is not None:
        top_k = min(DEFAULT_TOP_K, experts) if top_k is None else top_k
        capacity = DEFAULT_CAPACITY if capacity is None else float(capacity)
        if not 1 <= top_k <= experts:
            raise _not_allowed(f"top_k={top_k}", f"it must be between 1 and experts={experts}")
    return BlockConfig(block, attention, heads, heads if kv_heads is None else kv_heads, kv_heads is not None,
                       default_ffn(width, block) if ffn is None else ffn, ffn is not None, experts, top_k,
                       capacity)


def norm(g: GraphBuilder, path: str, numel, width, block: str) -> None:
    """LayerNorm (one kernel) for GPT-2 blocks; RMSNorm (module docstring) for Llama blocks."""
    if block == "gpt2":
        g.norm(path, numel, width)
        return
    g.params(path, width)
    g.op(OpKind.REDUCTION, f"{path}/stats", {"numel": numel, "n_in": 2, "n_out": 1, "flops_per_elem": 2},
         kernels=4, saved=False)
    g.pointwise(path, numel, flops_per_elem=2, n_in=2, n_out=2, kernels=2)


def residual(g: GraphBuilder, path: str, numel, dropout: float) -> None:
    """The residual add; with hidden dropout, Megatron's fused bias-dropout-add (one kernel: the sum and
    its 1-byte mask written, both kept -- Korthikanti et al. 2022, sec. 4.1)."""
    if dropout > 0:
        g.pointwise(path, numel, flops_per_elem=3, n_in=2, n_out=DROPOUT_OUTPUTS)
    else:
        g.pointwise(path, numel, n_in=2)


def build(width, batch=8, seq_len=1024, layers=12, heads=None, vocab=50257, block="gpt2", attention=None,
          kv_heads=None, ffn=None, experts=None, top_k=None, capacity=None, dropout=None, dtype="fp32"):
    dropout = dropout or 0.0
    if not 0 <= dropout < 1:
        raise _not_allowed(f"dropout={dropout!r}", "the dropout probability must be in [0, 1)")
    c = resolve_block(width, heads, block, attention, kv_heads, ffn, experts, top_k, capacity)
    tokens, gpt2 = batch * seq_len, c.block == "gpt2"
    g = GraphBuilder("transformer", dtype)
    g.embedding("wte", tokens, vocab, width)
    if gpt2:
        g.embedding("wpe", seq_len, seq_len, width)
        g.pointwise("embed_add", tokens * width, n_in=2)
    for i in range(layers):
        p = f"blocks/{i}"
        norm(g, f"{p}/ln1", tokens * width, width, c.block)
        self_attention(g, f"{p}/attn", batch, seq_len, width, c.heads, c.kv_heads, c.attention, bias=gpt2,
                  rope=not gpt2, kv_given=c.kv_given, dropout=dropout)
        residual(g, f"{p}/attn/residual", tokens * width, dropout)
        norm(g, f"{p}/ln2", tokens * width, width, c.block)
        if c.experts is None:
            dense_ffn(g, f"{p}/mlp", tokens, width, c.ffn, c.block)
        else:
            moe_ffn(g, f"{p}/mlp", tokens, width, c.ffn, c.block, c.experts, c.top_k, c.capacity)
        residual(g, f"{p}/mlp/residual", tokens * width, dropout)
    norm(g, "ln_f", tokens * width, width, c.block)
    if gpt2:  # LM head tied to wte: its weight is already counted under "wte"
        g.op(OpKind.GEMM, "lm_head", {"m": tokens, "n": vocab, "k": width},
             attrs={"weight": "b", "trans_b": True, "bias": False})
        g.tied["lm_head"] = "wte"
    else:
        g.linear("lm_head", tokens, width, vocab, bias=False)
    g.cross_entropy("loss", tokens, vocab)
    return g.build(width=width, batch=batch, seq_len=seq_len, layers=layers, heads=c.heads, vocab=vocab,
                   **c.config_entries(tokens), **({"dropout": dropout} if dropout else {}))


SPEC = ArchSpec(
    "transformer", "decoder-only transformer: GPT-2 or Llama blocks, naive/fused/flash attention, dense or MoE MLP",
    build,
    {"batch": Knob(8, "sequences per step"),
     "seq_len": Knob(1024, "tokens per sequence (context length)"),
     "layers": Knob(12, "transformer blocks", maximum=MAX_LAYERS),
     "heads": Knob(None, "attention heads (default: width // 64, i.e. head size 64)"),
     "vocab": Knob(50257, "token vocabulary (default: GPT-2 BPE)"),
     "block": Knob("gpt2", "gpt2: LayerNorm, GELU MLP, biases, learned positions, tied head; llama: RMSNorm, "
                           "SwiGLU, rotary, no biases, untied head", choices=BLOCKS),
     "attention": Knob(None, "naive | fused (Megatron scale-mask-softmax) | flash (FlashAttention-2) | flash_triton "
                             "(FlashAttention in Triton); "
                             "default naive for gpt2, flash for llama", choices=ATTENTIONS),
     "kv_heads": Knob(None, "K/V heads, grouped-query attention (default: heads; must divide heads)"),
     "ffn": Knob(None, "MLP hidden size (default: 4*width for gpt2, 8/3*width rounded up to 256 for llama)"),
     "experts": Knob(None, "mixture of experts: experts per MLP (default: dense MLP)"),
     "top_k": Knob(None, f"experts per token (default {DEFAULT_TOP_K}, at most experts)"),
     "capacity": Knob(None, f"expert capacity factor (default {DEFAULT_CAPACITY}): tokens per expert = "
                            "capacity*top_k*tokens/experts", minimum=0, kind=float),
     "dropout": Knob(None, "hidden and attention dropout probability (Megatron-LM's default 0.1): fused "
                          "bias-dropout-add and a dropout kernel on the attention probabilities; default none",
                     minimum=0, kind=float)},
    "perfmodel.torchmodels.transformer:Transformer")
