"""Expert parallelism: the experts of every mixture-of-experts layer spread over ``ep`` devices.

As in Megatron-core and GShard (Lepikhin et al. 2020, arXiv:2006.16668, sec. 2.2), the expert-parallel
group is carved out of the data-parallel group: each of its ``ep`` devices keeps its own tokens and
``E / ep`` of the E experts.  Per MoE layer and micro-batch, on one device (ops carry ``meta["moe"]``,
:mod:`perfmodel.architectures.moe`):

* expert GEMMs: ``E / ep`` expert problems of ``ep x C`` token rows each (C = tokens per expert of one
  device's tokens; every device of the group sends its share to each expert), so the expert FLOPs per
  device are those of ``ep = 1`` at the same micro-batch, the expert weights per device are divided by
  ``ep`` and each expert GEMM is ``ep`` times taller;
* expert parameters (``*/experts/*`` groups), their gradients and optimizer state: divided by ``ep``;
  their gradients are all-reduced over the ``dp / ep`` devices holding the same experts;
* communication: an all-to-all before the experts (dispatch) and one after (combine) in the forward
  pass, and the two transposed ones in the backward pass, each of ``tokens x bytes_per_token`` bytes
  per device (:func:`perfmodel.parallel.collectives.alltoall_s`, the α–β model of the other
  collectives), on the critical path.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..graph import ModelGraph

#: ``meta["moe"]["role"]`` of the ops whose input (dispatch) or output (combine) crosses the group
ALLTOALL_ROLES = ("dispatch", "combine")


def is_expert_group(path: str) -> bool:
    """A parameter group of the experts (divided by the expert-parallel degree)."""
    return "/experts/" in path or path.endswith("/experts")


def experts_of(graph: ModelGraph):
    """The number of experts per MoE layer, or None for a dense model."""
    return graph.config.get("experts")


def split_experts(graph: ModelGraph, ep: int) -> ModelGraph:
    """``graph`` as one device of an ``ep``-way expert-parallel group runs it (module docstring)."""
    if ep == 1 or not experts_of(graph):
        return graph
    fwd = []
    for op in graph.fwd:
        if op.meta.get("moe", {}).get("role") == "expert":
            d = op.dims
            op = replace(op, dims={**d, "batch": d["batch"] // ep, "m": d["m"] * ep})
        fwd.append(op)
    groups = {g: (np.asarray(c) // ep if is_expert_group(g) else c) for g, c in graph.param_groups.items()}
    return replace(graph, fwd=fwd, param_groups=groups)   # params: still the whole model's count


def alltoall_bytes(graph: ModelGraph, tp=1, sequence_parallel: bool = False) -> dict:
    """Op path -> bytes one device sends in the all-to-all at that op (forward; backward the same),
    ``tokens x bytes_per_token`` with tokens = micro-batch x sequence (1/tp of them under sequence
    parallelism)."""
    tokens = np.asarray(graph.config.get("batch", 1)) * graph.config.get("seq_len", 1)
    if sequence_parallel:
        tokens = tokens / np.asarray(tp)
    out = {}
    for op in graph.fwd:
        moe = op.meta.get("moe", {})
        if moe.get("role") in ALLTOALL_ROLES:
            out[op.path] = tokens * moe["bytes_per_token"]
    return out
