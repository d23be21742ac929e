"""Mixture-of-experts feed-forward sublayer, one op per kernel group of
:class:`perfmodel.torchmodels.moe.MoE` (Shazeer et al. 2017, arXiv:1701.06538; GShard, Lepikhin
et al. 2020, arXiv:2006.16668; Switch, Fedus et al. 2021, arXiv:2101.03961).

Per block, with N tokens, E experts, top-k routing and capacity factor c:

* ``router``: ``Linear(width, E)``, no bias; ``router_softmax`` over the E logits; ``topk``
  (with the routing bookkeeping -- sort of the N*k assignments by expert, positions in each
  expert's queue, drop beyond capacity -- small integer kernels counted as its kernels);
* ``dispatch``: the permutation gather of token rows into the ``[E, C, width]`` expert buffer
  (zero padding), memory-bound;
* ``experts/fc``, activation, ``experts/proj``: batched GEMMs, one ``[C x width]`` problem per
  expert, with ``C = ceil(c * k * N / E)`` tokens per expert (:func:`expert_capacity`,
  Megatron-core's ``get_capacity``): the load at the capacity factor, padding included;
* ``combine``: the gather back to token order, scaled by the gate and summed over the k
  choices (scatter-add), memory-bound.

The auxiliary load-balancing loss (Switch eq. 4: E * sum_e f_e P_e) is O(N E) and not modelled.
Parameters count all E experts.

For expert parallelism (a later pass in :mod:`perfmodel.parallel`) every op of the sublayer
carries ``meta["moe"]`` (the ops under ``mlp/experts/`` run per expert on C tokens; the GEMMs
carry it): ``role`` ("router", "dispatch", "expert", "combine"), ``experts``,
``top_k``, ``capacity_factor``, ``tokens_per_expert`` (C), and for dispatch and combine
``bytes_per_token`` (top_k * width * dtype bytes: what each token sends to, and receives from,
its experts' devices -- the all-to-all payload).  Expert GEMMs have ``dims["batch"] = E``, so an
expert-parallel split divides that dim and the ``experts/*`` parameter groups by the EP degree.
"""
from __future__ import annotations

import numpy as np

from ..ops import DTYPE_BYTES, OpKind
from .ffn import activation, fc_width
from .layers import GraphBuilder

DEFAULT_CAPACITY = 1.25  # Switch Transformer's training capacity factor (Fedus et al. 2021, Sec. 2.2)
DEFAULT_TOP_K = 2        # GShard, Mixtral
#: small integer kernels of the routing bookkeeping in the torch module, as torch.profiler lists them
#: (sort, bincount with its min/max/fills, cumsum, 2 arange, 4 index, 2 nonzero, sub, lt, mul, add),
ROUTING_KERNELS = 20
DISPATCH_KERNELS = 4     # token index, row gather, zero-fill, index_copy_
COMBINE_KERNELS = 5      # row gather, gate gather, multiply, zero-fill, index_add


def expert_capacity(tokens, experts, top_k, capacity):
    """Tokens per expert ``ceil(capacity * top_k * tokens / experts)`` (Megatron-core
    ``moe_utils.get_capacity`` with num_tokens = tokens * top_k); 1e-9 of a token absorbs float
    round-off (1.1 * 2 * 50 / 2 is 55.000000000000007)."""
    c = np.ceil(np.asarray(tokens) * top_k * capacity / experts - 1e-9).astype(np.int64)
    return int(c) if c.ndim == 0 else c


def expert_linear(g: GraphBuilder, path, experts, cap_tokens, d_in, d_out, bias, moe):
    """E independent ``Linear(d_in, d_out)`` as one batched GEMM ``x[e] @ W[e]`` (weights stored
    ``[E, d_in, d_out]``, so no transpose), all E weights counted."""
    g.params(path, experts * (d_in * d_out + (d_out if bias else 0)))
    g.op(OpKind.GEMM, path, {"m": cap_tokens, "n": d_out, "k": d_in, "batch": experts},
         attrs={"weight": "b", "bias": bias}, moe={**moe, "role": "expert"})


def moe_ffn(g: GraphBuilder, p: str, tokens, width, ffn, block: str, experts, top_k, capacity) -> None:
    """``blocks/{i}/mlp`` as a mixture of ``experts`` feed-forward experts of the block's kind."""
    cap = expert_capacity(tokens, experts, top_k, capacity)
    moe = {"experts": experts, "top_k": top_k, "capacity_factor": capacity, "tokens_per_expert": cap}
    per_token = {**moe, "bytes_per_token": top_k * width * DTYPE_BYTES[g.dtype]}
    bias = block == "gpt2"
    g.params(f"{p}/router", width * experts)
    g.op(OpKind.GEMM, f"{p}/router", {"m": tokens, "n": experts, "k": width},
         attrs={"weight": "b", "trans_b": True, "bias": False}, moe={**moe, "role": "router"})
    g.reduction(f"{p}/router_softmax", tokens * experts)
    g.op(OpKind.REDUCTION, f"{p}/topk", {"numel": tokens * experts, "n_in": 1, "n_out": 0,
                                         "flops_per_elem": 1}, kernels=1 + ROUTING_KERNELS,
         moe={**moe, "role": "router"})
    slots = experts * cap
    g.op(OpKind.COPY, f"{p}/dispatch", {"numel": slots * width}, kernels=DISPATCH_KERNELS,
         moe={**per_token, "role": "dispatch"})
    expert_linear(g, f"{p}/experts/fc", experts, cap, width, fc_width(ffn, block), bias, moe)
    activation(g, f"{p}/experts/{'gelu' if block == 'gpt2' else 'swiglu'}", slots * ffn, block)
    expert_linear(g, f"{p}/experts/proj", experts, cap, ffn, width, bias, moe)
    g.op(OpKind.ELEMENTWISE, f"{p}/combine", {"numel": tokens * top_k * width, "n_in": 2, "n_out": 1,
                                              "flops_per_elem": 2}, kernels=COMBINE_KERNELS,
         moe={**per_token, "role": "combine"})
