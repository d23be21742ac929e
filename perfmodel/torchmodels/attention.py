"""Causal self-attention mirroring :mod:`perfmodel.architectures.attention` kernel for kernel.

``naive`` writes attention out with ``torch.bmm`` and ``torch.softmax`` (not
``F.scaled_dot_product_attention``) so the kernels, and the FLOPs that ``FlopCounterMode`` sees,
are the ones the builder emits; ``fused`` computes the scaled scores in one
``baddbmm(beta=0, alpha=1/sqrt(d))`` (Megatron's call before its fused scale-mask-softmax), then
masks them in place and takes the softmax: torch has no fused scale-mask-softmax kernel, so this
mirror makes one T x T pass (the in-place mask) more than the graph, which prices Megatron's
fused CUDA kernel; ``flash`` calls
``F.scaled_dot_product_attention(is_causal=True)`` (FlashAttention-2 on CUDA, the fused CPU
flash kernel on CPU), with grouped K/V passed as they are (``enable_gqa``).
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from .llama import apply_rotary, rotary_table


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, seq_len, kv_heads=None, kind="naive", bias=True, rope=False, dropout=0.0):
        super().__init__()
        kind = "flash" if kind == "flash_triton" else kind   # on torch: the same SDPA call
        self.heads, self.d_head, self.kind, self.dropout = heads, width // heads, kind, dropout
        self.kv_heads = heads if kv_heads is None else kv_heads
        self.grouped = kv_heads is not None or rope   # q, k, v split apart instead of one view of qkv
        self.scale = 1.0 / math.sqrt(self.d_head)
        out = (heads + 2 * self.kv_heads) * self.d_head if self.grouped else 3 * width
        self.qkv = nn.Linear(width, out, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        if kind != "flash":
            mask = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)  # True above the diagonal
            self.register_buffer("mask", mask, persistent=False)
        if rope:
            self.register_buffer("rotary", rotary_table(seq_len, self.d_head), persistent=False)
        self.rope = rope

    def _split(self, qkv, b, t):
        """q, k, v as ``[batch, T, heads, d]`` views (k, v with ``kv_heads``), rotated when rope."""
        h, kv, d = self.heads, self.kv_heads, self.d_head
        if not self.grouped:
            return qkv.view(b, t, 3, h, d).unbind(2)
        q, k, v = qkv.split([h * d, kv * d, kv * d], dim=-1)
        q, k, v = q.view(b, t, h, d), k.view(b, t, kv, d), v.view(b, t, kv, d)
        if self.rope:
            q, k = apply_rotary(q, self.rotary), apply_rotary(k, self.rotary)
        return q, k, v

    def _heads_first(self, x, b, t):
        """``[batch, T, n, d]`` -> ``[batch * heads, T, d]``, K/V heads repeated: one copy."""
        n, h = x.shape[2], self.heads
        return x.transpose(1, 2)[:, :, None].expand(b, n, h // n, t, self.d_head).reshape(b * h, t, self.d_head)

    def forward(self, x):
        b, t, c = x.shape
        h, d = self.heads, self.d_head
        qkv = self.qkv(x)                                                   # (add)mm
        if self.kind == "flash":
            q, k, v = (z.transpose(1, 2) for z in self._split(qkv, b, t))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != h,
                                               dropout_p=self.dropout if self.training else 0.0)
            return self.proj(y.transpose(1, 2).reshape(b, t, c))           # O is written [b, T, h, d]: a view
        if self.grouped:
            q, k, v = (self._heads_first(z, b, t) for z in self._split(qkv, b, t))  # three copies
        else:
            qkv = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4).reshape(3, b * h, t, d)  # one copy
            q, k, v = qkv.unbind(0)
        if self.kind == "naive":
            att = torch.bmm(q, k.transpose(1, 2)) * self.scale              # bmm, mul
            att = att.masked_fill(self.mask[:t, :t], float("-inf"))         # masked_fill
        else:  # scaled in the GEMM, masked in place
            att = torch.baddbmm(q.new_empty(b * h, t, t), q, k.transpose(1, 2), beta=0, alpha=self.scale)
            att = att.masked_fill_(self.mask[:t, :t], float("-inf"))
        att = torch.softmax(att, dim=-1)
        if self.dropout and self.training:
            att = F.dropout(att, self.dropout)
        y = torch.bmm(att, v)                                               # [b*h, t, d]
        y = y.view(b, h, t, d).transpose(1, 2).reshape(b, t, c)             # one copy
        return self.proj(y)
