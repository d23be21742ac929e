"""Gradient confusion (Sankararaman et al. 2020, arXiv:1904.06963, Definition 2.1).

A set of per-example gradients ``g_1..g_n`` has confusion bound ``eta`` when
``<g_i, g_j> >= -eta`` for all ``i != j``.  We report the smallest ``eta``
that holds on the sample, ``confusion = max(0, -min_{i<j} <g_i, g_j>)``, the
same on cosine similarities (``confusion_cos``, scale-free, so comparable
across widths whose gradient norms differ), and the distribution of the
pairwise inner products (quantiles, fraction negative).

Per-example gradients come flattened as ``G[n_examples, n_params]`` from
:func:`perfmodel.steps.gradstats` (shared with the step-law code).
"""
from __future__ import annotations

import torch

QUANTILES = (0.01, 0.05, 0.25, 0.5)


def pairwise_products(G: torch.Tensor, cosine: bool = False) -> torch.Tensor:
    """Inner products ``<g_i, g_j>`` for ``i < j`` (or cosines), as a 1-D float64 tensor."""
    G = G.detach().double()
    if cosine:
        G = G / G.norm(dim=1, keepdim=True).clamp_min(torch.finfo(G.dtype).tiny)
    gram = G @ G.T
    i, j = torch.triu_indices(G.shape[0], G.shape[0], offset=1)
    return gram[i, j]


def gradient_confusion(G: torch.Tensor) -> dict[str, float]:
    """Confusion statistics of per-example gradients ``G[n, p]`` (needs ``n >= 2``).

    Keys: ``confusion`` (eta = -min inner product, floored at 0), ``min_inner``,
    ``confusion_cos`` / ``min_cos`` (the same on cosines), ``frac_negative``
    (share of pairs pointing apart), ``cos_q01..cos_q50`` (quantiles of the
    cosines) and ``mean_sq_norm`` (mean ``||g_i||^2``, for scale).
    """
    if G.ndim != 2 or G.shape[0] < 2:
        raise ValueError(f"need per-example gradients [n >= 2, params], got shape {tuple(G.shape)}")
    inner = pairwise_products(G)
    cos = pairwise_products(G, cosine=True)
    q = torch.quantile(cos, torch.tensor(QUANTILES, dtype=cos.dtype)).tolist()
    out = {
        "confusion": max(0.0, -float(inner.min())),
        "min_inner": float(inner.min()),
        "confusion_cos": max(0.0, -float(cos.min())),
        "min_cos": float(cos.min()),
        "frac_negative": float((inner < 0).double().mean()),
        "mean_sq_norm": float(G.detach().double().square().sum(1).mean()),
    }
    out.update({f"cos_q{round(100 * p):02d}": v for p, v in zip(QUANTILES, q, strict=True)})
    return out
