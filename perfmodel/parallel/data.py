"""Data parallelism: the gradient all-reduce, bucketed and overlapped with the backward pass.

Each of the ``dp`` replicas holds the same weights (after the tensor and
pipeline split) and all-reduces its G gradient bytes once per step.  Like
PyTorch DDP (Li et al. 2020, "PyTorch Distributed", VLDB 13(12), sec. 3.2.3;
bucket_cap_mb = 25) the gradients go in n = ceil(G / bucket) buckets of c
seconds each, and a bucket is launched as soon as backward has produced it.
With gradients produced evenly over a backward pass of W seconds, bucket k is
ready at k·W/n and the buckets share one communication stream, so the last
one finishes at ``max_k (k·W/n + (n-k+1)·c)`` -- a linear function of k,
largest at k = 1 or k = n -- and the time left after the backward pass is::

    exposed = max(n·c - W·(n-1)/n, c)          (overlap on)
    exposed = n·c                              (overlap off: all-reduce after backward)

c is the all-reduce of G/n bytes over ``dp`` devices (:mod:`.collectives`).
"""
from __future__ import annotations

import numpy as np

from . import collectives as coll

#: PyTorch DDP's default bucket size, 25 MiB (``bucket_cap_mb=25``)
DEFAULT_BUCKET_BYTES = 25 * 2**20


def gradient_allreduce_s(grad_bytes, backward_s, dp, ln: coll.Link, algorithm: str = "ring",
                         bucket_bytes: float = DEFAULT_BUCKET_BYTES, overlap: bool = True):
    """``(total_s, exposed_s)`` of one step's gradient all-reduce (arrays broadcast)."""
    g = np.asarray(grad_bytes, dtype=float)
    n = np.maximum(np.ceil(g / bucket_bytes), 1)
    c = coll.allreduce_s(g / n, dp, ln, algorithm)
    total = n * c
    if not overlap:
        return total, total
    exposed = np.maximum(total - np.asarray(backward_s) * (n - 1) / n, c)
    return total, exposed
