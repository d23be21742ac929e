"""FlashAttention-2 as one op of the IR: FLOPs, bytes and the backward rule of ``OpKind.ATTENTION``.

Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning"
(arXiv:2307.08691): Algorithm 1 (forward) and Algorithm 2 (backward).  Importing this module
registers the kind in :data:`perfmodel.ops.COST_TABLE` and :data:`perfmodel.ops.BACKWARD_RULES`
(the builders that emit the op and the roofline that prices it import it).

dims: ``batch`` (sequences), ``heads`` (query heads), ``kv_heads`` (grouped-query attention: K and
V have ``kv_heads`` heads, each shared by ``heads / kv_heads`` query heads), ``seq`` (T),
``head_dim`` (d), ``tile`` (Br = Bc: query and key rows per tile).  attrs: ``causal``, ``kernel``:
``"flash2"`` (FlashAttention-2, the default) or ``"triton"`` (HazyResearch's earlier FlashAttention in
Triton, ``flash_attn/flash_attn_triton.py``: the same tiles and bytes, run at
:data:`KERNEL_RELATIVE_RATE` of FlashAttention-2's FLOP rate by :func:`perfmodel.cost.roofline.attention_compute_s`).

Tiles visited, per (sequence, query head), with ``nb = ceil(T / tile)`` tiles and
``last = T - (nb - 1) * tile`` rows in the last one (:func:`tile_counts`):

* non-causal: every (query tile i, key tile j); causal: only j <= i -- the blocks above the
  diagonal are skipped, the diagonal ones computed in full and masked inside (Algorithm 1 as
  the flash-attn kernels run it), so about half the work for nb >> 1;
* ``scores`` S: score elements computed, T^2 or ``tile^2 (nb-1) nb / 2 + last T``;
* ``kv_rows``: K (and V) rows loaded over all query tiles, ``nb T`` or ``tile (nb-1) nb / 2 + T``;
* ``q_rows``: Q (O, dO, dQ) rows loaded over all key tiles (backward), ``nb T`` or
  ``tile (nb-1) nb / 2 + last nb``.

FLOPs (2 per multiply-add), times batch * heads:

* forward: ``Q K^T`` and ``P V``: 2 GEMMs of ``2 S d`` = ``4 S d``; softmax with the online
  rescaling: scale, max, subtract, exp, row sum = 5 per score;
* backward: the scores are recomputed (``Q K^T`` again, ``2 S d``), then ``dV += P^T dO``,
  ``dP = dO V^T``, ``dQ += dS K``, ``dK += dS^T Q``: 5 GEMMs = ``10 S d``; ``P = exp(S - L)``
  and ``dS = P * (dP - D)``: 5 per score; ``D = rowsum(dO * O)``: ``2 T d``.

Bytes (elements x dtype bytes; the log-sum-exp L, D and the dQ accumulator in fp32), per
(sequence, query head):

* forward: Q read once (T d), K and V once per query tile (``2 kv_rows d``); O written once
  (T d) and L (T).  Only O and L are kept for the backward pass: no T x T tensor in memory;
* backward (3 kernels, as flash-attn's ``run_mha_bwd``: ``dot_do_o``, the main loop,
  ``convert_dQ``): D from dO and O (read 2 T d, write T); dQ zero-filled (T d, fp32); K and V
  read once per key tile (2 T d); per visited tile Q, O, dO read (``3 q_rows d``), dQ read and
  written (``q_rows d`` each, fp32), L and D read (``2 q_rows``); dK and dV written (2 T d) per
  query head; dQ converted (read T d fp32, write T d).  With grouped K/V, dK and dV of the
  ``heads`` query heads are summed into ``kv_heads`` (read 2 T d per query head, write 2 T d per
  K/V head), as flash-attn's ``mha_bwd`` does.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .ops import BACKWARD_RULES, DTYPE_BYTES, Op, OpKind, register_cost
from .units import ceil_div

FP32_BYTES = 4                  # L, D and the dQ accumulator
SOFTMAX_FLOPS_PER_SCORE = 5     # forward: scale, max, sub, exp, sum; backward: scale, sub L, exp, sub D, mul P
BWD_GEMMS, FWD_GEMMS = 5, 2     # backward recomputes Q K^T (Algorithm 2, line 11)
BWD_KERNELS = 3                 # dot_do_o, main loop, convert_dQ


def tile_counts(seq, tile, causal: bool):
    """``(scores, kv_rows, q_rows)`` over the tiles visited per (sequence, query head); module docstring."""
    nb = ceil_div(seq, tile)
    if not causal:
        return seq * seq, nb * seq, nb * seq
    last = seq - (nb - 1) * tile
    below = (nb - 1) * nb // 2      # full tiles below and on the diagonal, the last query tile aside
    return tile * tile * below + last * seq, tile * below + seq, tile * below + last * nb


def flash_flops(op: Op):
    """``(gemm_flops, softmax_flops)`` of one execution: the tensor-core and the vector-unit parts."""
    d = op.dims
    scores, _, _ = tile_counts(d["seq"], d["tile"], op.attrs.get("causal", False))
    bh, hd = d["batch"] * d["heads"], d["head_dim"]
    if op.phase == "fwd":
        return 2 * FWD_GEMMS * scores * hd * bh, SOFTMAX_FLOPS_PER_SCORE * scores * bh
    return 2 * BWD_GEMMS * scores * hd * bh, (SOFTMAX_FLOPS_PER_SCORE * scores + 2 * d["seq"] * hd) * bh


#: FLOP rate of an attention kernel relative to FlashAttention-2's, per phase: Dao 2023 sec. 4.1 measures
#: FlashAttention-2 "around 1.3-1.5x faster than FlashAttention in Triton in the forward pass and around
#: 2x faster in the backward pass" (A100 80GB SXM4, head dims 64 and 128, causal and not): 1 / 1.4, 1 / 2
KERNEL_RELATIVE_RATE = {"flash2": {"fwd": 1.0, "bwd_data": 1.0}, "triton": {"fwd": 1 / 1.4, "bwd_data": 1 / 2}}


def relative_rate(op: Op) -> float:
    """:data:`KERNEL_RELATIVE_RATE` of ``op``'s kernel and phase."""
    return KERNEL_RELATIVE_RATE[op.attrs.get("kernel", "flash2")][op.phase]


@register_cost(OpKind.ATTENTION)
def _flash_cost(op):
    d = op.dims
    t, hd, e, f = d["seq"], d["head_dim"], DTYPE_BYTES[op.dtype], FP32_BYTES
    _, kv_rows, q_rows = tile_counts(t, d["tile"], op.attrs.get("causal", False))
    bh = d["batch"] * d["heads"]
    gemm, softmax = flash_flops(op)
    if op.phase == "fwd":
        read = bh * (t * hd + 2 * kv_rows * hd) * e
        return gemm + softmax, read, bh * (t * hd * e + t * f)
    grouped = d["heads"] > d["kv_heads"]   # dK, dV summed over each group of query heads
    read = bh * (2 * t * hd * e + 2 * t * hd * e + q_rows * (3 * hd * e + hd * f + 2 * f) + t * hd * f) \
        + grouped * bh * 2 * t * hd * e
    written = bh * (t * f + t * hd * f + q_rows * hd * f + 2 * t * hd * e + t * hd * e) \
        + grouped * d["batch"] * d["kv_heads"] * 2 * t * hd * e
    return gemm + softmax, read, written


def flash_output_tensors(op: Op) -> list:
    """Bytes of each tensor one execution allocates (what a CPU allocator hands out, unlike the tiled
    traffic above, which rewrites the dQ accumulator per tile): forward O and the row statistics L;
    backward dQ, dK and dV (dK, dV over the kv heads)."""
    d = op.dims
    t, hd, e, f = d["seq"], d["head_dim"], DTYPE_BYTES[op.dtype], FP32_BYTES
    if op.phase == "fwd":
        return [d["batch"] * d["heads"] * t * hd * e, d["batch"] * d["heads"] * t * f]
    kv = d["batch"] * d["kv_heads"] * t * hd * e
    return [d["batch"] * d["heads"] * t * hd * e, kv, kv]


def flash_hbm_bytes(op: Op, l2_bytes, sm_count):
    """``(read, written)`` HBM bytes of one execution on a GPU with ``l2_bytes`` of L2 and ``sm_count``
    SMs: the tiled traffic above is what the kernel loads, but thread blocks of one (sequence, head)
    run side by side (the grid's query- or key-tile index is its fastest), so the K and V tiles every
    query tile re-reads (forward), and the Q, O, dO, L, D tiles and the dQ accumulator every key tile
    touches (backward), are served from L2 when the heads in flight (ceil(SMs / tiles per head)) fit
    their per-head tensors in it: then each tensor crosses HBM once (``kv_rows`` and ``q_rows`` become
    T).  Otherwise the tiled traffic."""
    d = op.dims
    t, hd, e, f = d["seq"], d["head_dim"], DTYPE_BYTES[op.dtype], FP32_BYTES
    nb = ceil_div(t, d["tile"])
    in_flight = ceil_div(sm_count, nb)
    per_head = t * (2 * hd * e if op.phase == "fwd" else 3 * hd * e + hd * f + 2 * f)
    _, read, written = _flash_cost(op)
    if op.phase == "fwd":
        once_read = d["batch"] * d["heads"] * 3 * t * hd * e
    else:
        once = replace(op, dims={**d, "tile": t})   # one tile per head: every tensor read once
        _, once_read, once_written = _flash_cost(once)
    fits = in_flight * per_head <= l2_bytes
    if op.phase == "fwd":
        return np.where(fits, once_read, read)[()], written
    return np.where(fits, once_read, read)[()], np.where(fits, once_written, written)[()]


def _flash_bwd(op):
    """One backward op (dQ, dK, dV) of the same dims; the scores are recomputed, nothing T x T saved."""
    return [replace(op, phase="bwd_data", saved=False, meta={**op.meta, "kernels": BWD_KERNELS})]


BACKWARD_RULES[OpKind.ATTENTION] = _flash_bwd
