"""GPT-style decoder mirroring :mod:`perfmodel.architectures.transformer` kernel for kernel.

Attention is written out with ``torch.bmm`` and ``torch.softmax`` (not
``F.scaled_dot_product_attention``) so the kernels, and the FLOPs that
``FlopCounterMode`` sees, are the ones the builder emits.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..architectures.transformer import resolve_heads


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads, seq_len):
        super().__init__()
        self.heads, self.d_head = heads, width // heads
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        mask = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)  # True above the diagonal
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        h, d = self.heads, self.d_head
        qkv = self.qkv(x)                                                   # addmm
        qkv = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4).reshape(3, b * h, t, d)  # one copy
        q, k, v = qkv.unbind(0)
        att = torch.bmm(q, k.transpose(1, 2)) * self.scale                  # bmm, mul
        att = att.masked_fill(self.mask[:t, :t], float("-inf"))             # masked_fill
        att = torch.softmax(att, dim=-1)
        y = torch.bmm(att, v)                                               # [b*h, t, d]
        y = y.view(b, h, t, d).transpose(1, 2).reshape(b, t, c)             # one copy
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, width, heads, seq_len):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, seq_len)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(self, width, batch=8, seq_len=1024, layers=12, heads=None, vocab=50257):
        super().__init__()
        heads = resolve_heads(width, heads)
        self.batch, self.seq_len, self.vocab = batch, seq_len, vocab
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(Block(width, heads, seq_len) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.register_buffer("pos", torch.arange(seq_len), persistent=False)

    def forward(self, tokens):
        """tokens: [batch, T] int64 -> logits [batch, T, vocab] (LM head tied to ``wte``)."""
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(self.pos[:t])
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    def loss(self, tokens, targets):
        return F.cross_entropy(self(tokens).reshape(-1, self.vocab), targets.reshape(-1))

    def example_batch(self, device="cpu", generator=None):
        t = torch.randint(0, self.vocab, (self.batch, self.seq_len + 1), device=device, generator=generator)
        return t[:, :-1], t[:, 1:]
