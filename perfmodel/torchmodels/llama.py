"""Llama pieces (Touvron et al. 2023, arXiv:2302.13971) mirroring :mod:`perfmodel.architectures.ffn` and
:mod:`perfmodel.architectures.attention`: the SwiGLU MLP and rotary embeddings.

Rotary embeddings as Meta's reference ``apply_rotary_emb`` (``llama/model.py``): consecutive
feature pairs of each head viewed as complex numbers and multiplied by ``exp(i t theta_j)``,
``theta_j = 10000^(-2j/d)`` (Su et al. 2021, arXiv:2104.09864): one kernel per tensor.
"""
import torch
from torch import nn
from torch.nn import functional as F

ROPE_THETA = 10000.0


def rotary_table(seq_len: int, head_dim: int) -> torch.Tensor:
    """``[seq_len, head_dim / 2, 2]``: cos and sin of ``t * theta_j`` (real storage of the complex
    factors, so the buffer moves and casts like any float tensor)."""
    inv = 1.0 / ROPE_THETA ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``x``: ``[batch, T, heads, d]`` -> rotated, same shape (contiguous): one complex multiply."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rot = torch.view_as_complex(table[: x.shape[1]].float())[:, None, :]   # [T, 1, d/2]
    return torch.view_as_real(xc * rot).flatten(3).type_as(x)


def swiglu(h: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` of the two halves of the fused gate/up projection (2 kernels)."""
    gate, up = h.chunk(2, dim=-1)
    return F.silu(gate) * up


class SwiGLU(nn.Module):
    """``proj(silu(x W_gate) * (x W_up))``; gate and up are one ``Linear(width, 2 * ffn)``, no biases."""

    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.fc = nn.Linear(width, 2 * ffn, bias=False)
        self.proj = nn.Linear(ffn, width, bias=False)

    def forward(self, x):
        return self.proj(swiglu(self.fc(x)))
