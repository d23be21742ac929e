"""Convolution algorithms besides the implicit GEMM, for GPU libraries that pick the fastest.

cuDNN's ``cudnnFind*`` (and ``torch.backends.cudnn.benchmark``) times every
algorithm that supports a convolution and keeps the fastest, so a conv's time
is the minimum over the algorithms that apply.  The implicit GEMM (any conv)
is costed in :mod:`perfmodel.cost.roofline`; this module adds Winograd.

Winograd, non-fused (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016): for stride-1 3x3 filters, F(4x4, 3x3) makes each 4x4
output tile from a 6x6 input tile (``ALPHA = 4 + 3 - 1``) with ``ALPHA^2 = 36``
multiplies per (tile, input channel, output channel) instead of ``16 * 9 = 144``.
It runs as three passes through memory and one batched GEMM::

    tiles      = n * ceil(p / 4) * ceil(q / 4)
    GEMMs      = 36 independent [tiles x c] @ [c x k]      (fwd; bwd_data swaps c and k,
                                                            bwd_weight reduces over tiles)
    flops      = 2 * 36 * tiles * c * k
    transforms = input and filter into the Winograd domain, the product back out:
    bytes      = dsize * (n*c*h*w + 36*tiles*c  +  k*c*9 + 36*k*c  +  36*tiles*k + n*k*p*q)

The GEMM runs at the efficiency the profile gives a GEMM of ``36 * tiles``
rows (the batch fills the device like one tall GEMM); the transforms at the
profile's memory bandwidth.  (cuDNN also has FFT algorithms for large
filters; they are not modelled, so those convs keep the implicit-GEMM time.)
"""
from __future__ import annotations

from ..ops import DTYPE_BYTES, Op, OpKind, conv_out_hw

TILE = 4                 # output tile of F(4x4, 3x3)
FILTER = 3
ALPHA = TILE + FILTER - 1


def winograd_applies(d) -> bool:
    """Stride-1 3x3 convolutions (dilation 1, as every conv of the IR)."""
    return (d["r"], d["s"], d["stride_h"], d["stride_w"]) == (FILTER, FILTER, 1, 1)


def winograd_parts(op: Op):
    """``(gemm_op, transform_bytes)`` of a conv phase run as non-fused Winograd F(4x4, 3x3)."""
    d = op.dims
    p, q = conv_out_hw(d)
    n, c, k = d["n"], d["c"], d["k"]
    tiles = n * -(-p // TILE) * -(-q // TILE)
    a2 = ALPHA * ALPHA
    if op.phase == "bwd_weight":      # dW[a] = X[a]^T dY[a], summed over tiles
        m, nn_, kk = c, k, tiles
    elif op.phase == "bwd_data":      # dX[a] = dY[a] W[a]^T
        m, nn_, kk = tiles, c, k
    else:                             # Y[a] = X[a] W[a]
        m, nn_, kk = tiles, k, c
    gemm = Op(OpKind.GEMM, op.path + "/winograd_gemm", {"m": a2 * m, "n": nn_, "k": kk}, op.dtype, op.phase,
              attrs={"trans_a": False, "trans_b": False})
    nbytes = DTYPE_BYTES[op.dtype] * (n * c * d["h"] * d["w"] + a2 * tiles * c + k * c * FILTER * FILTER
                                      + a2 * k * c + a2 * tiles * k + n * k * p * q)
    return gemm, nbytes
