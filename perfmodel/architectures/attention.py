"""Causal self-attention of the transformer blocks, one op per kernel of
:class:`perfmodel.torchmodels.attention.CausalSelfAttention`, in three implementations.

``attention="naive"`` (the GPT-2 block's default: today's kernels)
    scores ``q @ k^T`` (batched GEMM, batch x heads of ``[T x d] @ [d x T]``), scale and causal
    ``masked_fill`` (2 kernels), softmax, ``att @ v``: the T x T scores are written and read by
    four kernels, and both the scores and the probabilities are kept for backward.
``attention="fused"``
    Megatron-LM's fused scale-mask-softmax (Shoeybi et al. 2019, arXiv:1909.08053;
    ``megatron/core/fusions/fused_softmax.py``, ``FusedScaleMaskSoftmax``): the scores GEMM
    writes the T x T scores once, one kernel reads them and writes the probabilities (scale,
    mask, max, subtract, exp, sum, divide: 7 FLOPs per score); only the probabilities are kept
    (its backward kernel reads them and the upstream gradient).  Both attention GEMMs still span
    the full T x T square.
``attention="flash"`` (the Llama block's default)
    FlashAttention-2 (Dao 2023, arXiv:2307.08691), ``F.scaled_dot_product_attention(is_causal=True)``:
    one ``OpKind.ATTENTION`` op (:mod:`perfmodel.ops_flash`) over tiles of :data:`FLASH_TILE` rows;
    no T x T tensor in memory (activations: O and the log-sum-exp), causal tiles above the
    diagonal skipped, scores recomputed in backward.  Q, K and V are read in the projection's
    ``[batch, T, heads, d]`` layout and O written in it: no head split or merge copies.
``attention="flash_triton"``
    the same tiles, bytes and memory with HazyResearch's earlier FlashAttention in Triton
    (``flash_attn/flash_attn_triton.py``; llm-foundry's ``attn_impl: triton`` is a copy of it), at its
    measured rate relative to FlashAttention-2 (:data:`perfmodel.ops_flash.KERNEL_RELATIVE_RATE`).

Saved for backward, as autograd keeps them: the head-split copies (q, k, v) and the merged context
(the projection's input), not the qkv projection's output nor the context before the merge copy
(copies need no input for their gradient), nor the output projection's (a residual add follows);
flash keeps the qkv output, whose views it reads.

Grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245): ``kv_heads`` K/V heads, each
shared by ``heads / kv_heads`` query heads; the fused projection is ``width -> (heads + 2 kv_heads)
* head_dim`` (Megatron's ``linear_qkv``).  The naive and fused paths expand K and V to ``heads``
in the head-split copy; flash reads the grouped K/V directly.  Rotary embeddings (Su et al. 2021,
arXiv:2104.09864; Meta's Llama ``apply_rotary_emb``: one complex multiply per pair of features, 6
FLOPs per pair) are one elementwise kernel each on Q and K.
"""
from __future__ import annotations

import numpy as np

from .. import ops_flash  # noqa: F401  (registers OpKind.ATTENTION's cost and backward rule)
from ..errors import PerfmodelError
from ..ops import OpKind
from .layers import GraphBuilder

ATTENTIONS = ("naive", "fused", "flash", "flash_triton")
#: the tiled kernels (one ``OpKind.ATTENTION`` op) and the kernel attribute each sets (:mod:`perfmodel.ops_flash`)
FLASH_KERNELS = {"flash": "flash2", "flash_triton": "triton"}
#: the attention core of the naive and fused paths (the ops between the head split and the head merge):
#: what selective recomputation reruns in backward instead of keeping (Korthikanti et al. 2022, sec. 5)
CORE_OPS = ("scores", "scale_mask", "softmax", "scale_mask_softmax", "attn_dropout", "context")
#: dropout writes its output and a 1-byte mask per 16-bit element: 1.5 outputs (Korthikanti et al. 2022, sec. 4.1)
DROPOUT_OUTPUTS = 1.5
#: FlashAttention-2 tile (Br = Bc query/key rows): flash-attn 2's forward block for head dims <= 128
#: on A100/H100 is 128 query rows (the paper's Sec. 3.3 tunes {64, 128} x {64, 128})
FLASH_TILE = 128
ROPE_FLOPS_PER_ELEM = 3          # (a + ib)(cos + i sin): 4 multiplies + 2 adds per pair
FUSED_SOFTMAX_FLOPS_PER_ELEM = 7  # scale, mask, max, subtract, exp, sum, divide


def self_attention(g: GraphBuilder, p: str, batch, seq, width, heads, kv_heads, kind: str,
              bias: bool = True, rope: bool = False, kv_given: bool = False, dropout: float = 0.0) -> None:
    """Emit one attention sublayer under path ``p`` (``blocks/{i}/attn``); see the module docstring.

    ``kv_given``: K/V heads were set (grouped projection and split even where they equal ``heads``).
    ``dropout`` > 0: attention dropout on the probabilities (naive and fused: one kernel writing the
    dropped probabilities and the mask, both kept; flash draws it inside the kernel, not priced).
    """
    d, t, tokens = width // heads, seq, batch * seq
    grouped = kv_given or rope   # q, k, v split apart (GQA or rotary) rather than one view of qkv
    # kept only where the kernel reads q, k, v as views of it (flash); else the head-split copy holds them
    g.linear(f"{p}/qkv", tokens, width, (heads + 2 * kv_heads) * d if grouped else 3 * width, bias=bias,
             saved=kind in FLASH_KERNELS)
    if rope:
        g.pointwise(f"{p}/rope_q", tokens * heads * d, flops_per_elem=ROPE_FLOPS_PER_ELEM)
        g.pointwise(f"{p}/rope_k", tokens * kv_heads * d, flops_per_elem=ROPE_FLOPS_PER_ELEM)
    if kind in FLASH_KERNELS:
        g.op(OpKind.ATTENTION, f"{p}/flash", {"batch": batch, "heads": heads, "kv_heads": kv_heads, "seq": t,
                                              "head_dim": d, "tile": FLASH_TILE},
             attrs={"causal": True, "kernel": FLASH_KERNELS[kind]})
    else:
        scores_tensor(g, p, batch, t, d, heads, tokens, kind, kernels=3 if grouped else 1, dropout=dropout)
    g.linear(f"{p}/proj", tokens, width, width, bias=bias, saved=False)   # consumed by the residual add


def scores_tensor(g: GraphBuilder, p: str, batch, t, d, heads, tokens, kind: str, kernels: int,
                  dropout: float = 0.0) -> None:
    """The naive and fused paths: head split (K/V expanded to ``heads``), both GEMMs over T x T,
    the softmax kernels between them, head merge."""
    bh = batch * heads
    g.op(OpKind.COPY, f"{p}/split_heads", {"numel": 3 * tokens * heads * d}, kernels=kernels)
    if kind == "naive":
        g.gemm(f"{p}/scores", t, t, d, batch=bh)                     # q @ k^T
        # two kernels (scale, masked_fill), each reads and writes the scores
        g.pointwise(f"{p}/scale_mask", bh * t * t, flops_per_elem=2, n_in=2, n_out=2, kernels=2, saved=False)
        g.reduction(f"{p}/softmax", bh * t * t)                      # max, sub, exp, sum, div
    else:  # fused: scores written once and read once; only the probabilities are kept
        g.op(OpKind.GEMM, f"{p}/scores", {"m": t, "n": t, "k": d, "batch": bh}, saved=False,
             attrs={"weight": None, "both_activations": True})
        g.reduction(f"{p}/scale_mask_softmax", bh * t * t, flops_per_elem=FUSED_SOFTMAX_FLOPS_PER_ELEM)
    if dropout > 0:   # compare a random number, scale: 2 FLOPs; the dropped probabilities and the mask kept
        g.pointwise(f"{p}/attn_dropout", bh * t * t, flops_per_elem=2, n_out=DROPOUT_OUTPUTS)
    g.op(OpKind.GEMM, f"{p}/context", {"m": t, "n": d, "k": t, "batch": bh}, saved=False,   # att @ v; the
         attrs={"weight": None, "both_activations": True})                                  # merge copy keeps it
    g.op(OpKind.COPY, f"{p}/merge_heads", {"numel": tokens * heads * d})


def is_attention_core(path: str) -> bool:
    """``blocks/{i}/attn/<op>`` with ``<op>`` in :data:`CORE_OPS`."""
    head, _, name = path.rpartition("/")
    return name in CORE_OPS and head.endswith("/attn")


def check_kv_heads(heads, kv_heads) -> None:
    """``kv_heads`` must divide ``heads`` (every width of a sweep)."""
    h = np.asarray(heads)
    bad = h % kv_heads != 0
    if np.any(bad):
        hv = int(h[bad].ravel()[0]) if h.ndim else int(h)
        raise PerfmodelError(f"kv_heads={kv_heads} is not allowed for model 'transformer': it must divide "
                             f"heads={hv} (each K/V head serves heads / kv_heads query heads)")
