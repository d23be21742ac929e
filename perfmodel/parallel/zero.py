"""Data-parallel communication of a training step under ZeRO stage 0-3 (Rajbhandari et al. 2020,
"ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", SC'20, sec. 5 and 7).

P = the stage's parameter bytes in the training dtype on one device (after tensor and pipeline
splits), N_d = the data-parallel degree, m = micro-batches per step, W_f / W_b = one micro-batch's
forward / backward seconds on the stage, n_u = its layer units (ring collectives, :mod:`.collectives`;
"bucketed" = :func:`.data.gradient_allreduce_s`'s buckets launched as backward produces them: DDP's
``bucket_bytes`` at stage 0; at stages 1-3 one collective per layer unit, as FSDP communicates per
wrapped module and DeepSpeed and Megatron's distributed optimizer in layer-sized buckets)::

    stage 0   all-reduce of the gradients (P), bucketed, after the last micro-batch's backward
    stage 1   reduce-scatter of the gradients (P), bucketed like stage 0; after the optimizer step on
              1/N_d of the parameters, all-gather of the updated parameters (P), bucketed over the
              next step's first forward pass (Megatron's --overlap-param-gather) when overlap is on
              (DeepSpeed's BF16_Optimizer under its pipeline engine all-reduces the full gradients
              instead, ``zero1_allreduce``: 2P before the all-gather, not P)
    stage 2   as stage 1, but the gradients are reduce-scattered after every micro-batch's backward
              (each micro-batch's buckets, the non-last ones also hidden behind the next forward)
    stage 3   per micro-batch (FSDP FULL_SHARD: Zhao et al. 2023, "PyTorch FSDP", VLDB 16(12), sec. 3.2):
              all-gather the parameters unit by unit in forward and again in backward, reduce-scatter
              each unit's gradients, prefetching the next unit while one computes:
                  exposed = m · (max(AG - W_f, AG/n_u) + max(AG + RS - W_b, RS/n_u))

In bytes a ring all-reduce is one reduce-scatter plus one all-gather, so stages 1 and 2 move what
stage 0 moves; stage 3 moves 1.5x that per micro-batch.  Without overlap everything is exposed.
"""
from __future__ import annotations

import numpy as np

from . import collectives as coll
from .data import gradient_allreduce_s


def _bucketed(kind: str, nbytes, window_s, dp, ln, buckets, overlap):
    """(total, exposed) of ``nbytes`` in ``buckets`` overlapping ``window_s`` (:mod:`.data`'s formula)."""
    g = np.asarray(nbytes, dtype=float)
    n = np.maximum(np.asarray(buckets, dtype=float), 1)
    c = coll.collective_s(kind, g / n, dp, ln)
    total = n * c
    if not overlap:
        return total, total
    return total, np.maximum(total - np.asarray(window_s) * (n - 1) / n, c)


def dp_comm_s(zero: int, param_bytes, fwd_s, bwd_s, units, m: int, dp, ln: coll.Link, algorithm: str,
              bucket_bytes: float, overlap: bool, zero1_allreduce: bool = False):
    """``(total_s, exposed_s)`` of one step's data-parallel communication per stage (arrays broadcast)."""
    if zero == 0:
        return gradient_allreduce_s(param_bytes, bwd_s, dp, ln, algorithm, bucket_bytes, overlap)
    if zero in (1, 2):
        if zero == 1 and zero1_allreduce:
            rs_t, rs_e = gradient_allreduce_s(param_bytes, bwd_s, dp, ln, algorithm, bucket_bytes, overlap)
        else:
            rs_t, rs_e = _bucketed("reducescatter", param_bytes, bwd_s, dp, ln, units, overlap)
        ag_t, ag_e = _bucketed("allgather", param_bytes, fwd_s, dp, ln, units, overlap)
        if zero == 1:
            return rs_t + ag_t, rs_e + ag_e
        # ZeRO-2: every micro-batch reduce-scatters; the earlier ones hide behind fwd + bwd (at m = 1
        # this is ZeRO-1's sum; m: a number, or an array over the configurations)
        hidden = np.maximum(rs_t - (np.asarray(fwd_s) + bwd_s), 0) if overlap else rs_t
        return m * rs_t + ag_t, rs_e + (m - 1) * hidden + ag_e
    n_u = np.maximum(np.asarray(units, dtype=float), 1)
    ag = n_u * coll.allgather_s(np.asarray(param_bytes) / n_u, dp, ln)
    rs = n_u * coll.reducescatter_s(np.asarray(param_bytes) / n_u, dp, ln)
    total = m * (2 * ag + rs)
    if not overlap:
        return total, total
    exposed = np.maximum(ag - fwd_s, ag / n_u) + np.maximum(ag + rs - bwd_s, rs / n_u)
    return total, m * exposed
