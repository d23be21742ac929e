"""Feed-forward sublayers of the transformer blocks (one op per kernel of
:mod:`perfmodel.torchmodels.llama` / :mod:`perfmodel.torchmodels.transformer`).

* GPT-2 (Radford et al. 2019): ``proj(gelu(fc(x)))``, hidden ``ffn`` (default 4 * width), biases.
* Llama (Touvron et al. 2023, arXiv:2302.13971; SwiGLU: Shazeer 2020, arXiv:2002.05202):
  ``proj(silu(x W_gate) * (x W_up))``, no biases.  Gate and up projections are one
  ``Linear(width, 2 * ffn)`` (Megatron-core's ``linear_fc1`` for gated units), so tensor
  parallelism splits them together.  Default hidden: Meta's ``FeedForward`` rule,
  ``int(8 * width / 3)`` rounded up to a multiple of :data:`FFN_MULTIPLE` (width 4096 -> 11008).
"""
from __future__ import annotations

from ..units import ceil_div
from .layers import GraphBuilder

FFN_MULTIPLE = 256
GELU_FLOPS = 5     # exact GELU x/2 * (1 + erf(x/sqrt2)): div, erf, add, 2 mul (erf counted as one)
SWIGLU_FLOPS = 5   # silu x * sigmoid(x): neg, exp, add, div; times up: mul


def default_ffn(width, block: str):
    """Hidden size of the MLP when ``ffn`` is not given (ints or integer arrays)."""
    if block == "gpt2":
        return 4 * width
    return FFN_MULTIPLE * ceil_div((8 * width) // 3, FFN_MULTIPLE)


def fc_width(ffn, block: str):
    """Output width of the first projection: ``2 * ffn`` for SwiGLU (gate and up), else ``ffn``."""
    return 2 * ffn if block == "llama" else ffn


def activation(g: GraphBuilder, path: str, numel, block: str) -> None:
    """GELU on ``numel`` hidden values, or SwiGLU (2 kernels: silu of the gate half, times the up
    half; both outputs kept for backward)."""
    if block == "llama":
        g.pointwise(path, numel, flops_per_elem=SWIGLU_FLOPS, n_in=3, n_out=2, kernels=2)
    else:
        g.pointwise(path, numel, flops_per_elem=GELU_FLOPS)


def dense_ffn(g: GraphBuilder, p: str, tokens, width, ffn, block: str) -> None:
    """``blocks/{i}/mlp``: fc, activation, proj."""
    bias = block == "gpt2"
    g.linear(f"{p}/fc", tokens, width, fc_width(ffn, block), bias=bias)
    activation(g, f"{p}/{'gelu' if block == 'gpt2' else 'swiglu'}", tokens * ffn, block)
    g.linear(f"{p}/proj", tokens, ffn, width, bias=bias, saved=False)   # consumed by the residual add
