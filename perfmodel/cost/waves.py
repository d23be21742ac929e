"""Kernel parallelism inside one GPU: wave quantization of tiled GEMMs.

A GEMM's output C[m x n] is cut into tiles of ``gemm_tile.m x gemm_tile.n``;
``sm_count * ctas_per_sm`` tiles run at once (one wave).  When the last wave
is partial, or the tiles hang over the matrix edge, part of the device idles:

    tiles      = ceil(m / tm) * ceil(n / tn) * batch
    waves      = ceil(tiles / (sm_count * ctas_per_sm))
    wave_eff   = tiles / (waves * sm_count * ctas_per_sm)
    tile_eff   = (m * n) / (ceil(m / tm) * tm * ceil(n / tn) * tn)

(NVIDIA, "Matrix Multiplication Background User's Guide", section on tile
and wave quantization.)

When the tiles cannot fill one wave and the reduction dimension is long,
cuBLAS and cuDNN split K across CTAs (split-K); each split still needs at
least ``SPLIT_K_MIN`` of K to amortize its partial-sum write, so

    split      = clip(min(slots // tiles, k // SPLIT_K_MIN), 1, None)
    tiles     *= split
"""
from __future__ import annotations

import numpy as np

from ..units import ceil_div

SPLIT_K_MIN = 256  # smallest K slice worth a CTA of its own (cuBLAS split-K heuristic scale)


def gemm_tiles(hw, m, n, batch=1):
    return ceil_div(m, hw.gemm_tile["m"]) * ceil_div(n, hw.gemm_tile["n"]) * batch


def split_k(hw, tiles, k):
    slots = hw.sm_count * hw.gemm_tile["ctas_per_sm"]
    return np.maximum(np.minimum(slots // tiles, k // SPLIT_K_MIN), 1)


def gemm_wave_efficiency(hw, m, n, batch=1, k=None):
    tm, tn = hw.gemm_tile["m"], hw.gemm_tile["n"]
    slots = hw.sm_count * hw.gemm_tile["ctas_per_sm"]
    tiles = gemm_tiles(hw, m, n, batch)
    if k is not None:
        tiles = tiles * split_k(hw, tiles, k)
    waves = ceil_div(tiles, slots)
    wave_eff = tiles / (waves * slots)
    tile_eff = (m * n) / (ceil_div(m, tm) * tm * ceil_div(n, tn) * tn)
    return np.asarray(wave_eff * tile_eff, dtype=float) if np.ndim(m) or np.ndim(n) else wave_eff * tile_eff
