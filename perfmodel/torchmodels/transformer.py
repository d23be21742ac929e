"""Decoder-only transformer mirroring :mod:`perfmodel.architectures.transformer` kernel for kernel:
GPT-2 or Llama blocks (:mod:`.llama`), naive/fused/flash attention (:mod:`.attention`), dense or
mixture-of-experts MLPs (:mod:`.moe`).
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..architectures.transformer import resolve_block
from .attention import CausalSelfAttention
from .llama import SwiGLU
from .moe import MoE


class MLP(nn.Module):
    def __init__(self, width, ffn=None):
        super().__init__()
        ffn = 4 * width if ffn is None else ffn
        self.fc = nn.Linear(width, ffn)
        self.proj = nn.Linear(ffn, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, width, heads, seq_len, cfg=None, dropout=0.0):
        super().__init__()
        self.dropout = dropout
        cfg = resolve_block(width, heads) if cfg is None else cfg
        llama = cfg.block == "llama"
        norm = nn.RMSNorm if llama else nn.LayerNorm
        self.ln1 = norm(width)
        self.attn = CausalSelfAttention(width, heads, seq_len, cfg.kv_heads if cfg.kv_given else None,
                                        cfg.attention, bias=not llama, rope=llama, dropout=dropout)
        self.ln2 = norm(width)
        if cfg.experts is not None:
            self.mlp = MoE(width, cfg.ffn, cfg.experts, cfg.top_k, cfg.capacity, cfg.block)
        else:
            self.mlp = SwiGLU(width, cfg.ffn) if llama else MLP(width, cfg.ffn)

    def forward(self, x):
        p = self.dropout if self.training else 0.0   # hidden dropout before each residual add
        x = x + F.dropout(self.attn(self.ln1(x)), p) if p else x + self.attn(self.ln1(x))
        return x + F.dropout(self.mlp(self.ln2(x)), p) if p else x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(self, width, batch=8, seq_len=1024, layers=12, heads=None, vocab=50257, block="gpt2",
                 attention=None, kv_heads=None, ffn=None, experts=None, top_k=None, capacity=None, dropout=None):
        super().__init__()
        cfg = resolve_block(width, heads, block, attention, kv_heads, ffn, experts, top_k, capacity)
        self.batch, self.seq_len, self.vocab, self.gpt2 = batch, seq_len, vocab, cfg.block == "gpt2"
        self.wte = nn.Embedding(vocab, width)
        if self.gpt2:
            self.wpe = nn.Embedding(seq_len, width)
            self.register_buffer("pos", torch.arange(seq_len), persistent=False)
        self.blocks = nn.ModuleList(Block(width, cfg.heads, seq_len, cfg, dropout or 0.0) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width) if self.gpt2 else nn.RMSNorm(width)
        if not self.gpt2:
            self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens):
        """tokens: [batch, T] int64 -> logits [batch, T, vocab] (GPT-2: LM head tied to ``wte``)."""
        t = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(self.pos[:t]) if self.gpt2 else self.wte(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight) if self.gpt2 else self.lm_head(x)

    def loss(self, tokens, targets):
        return F.cross_entropy(self(tokens).reshape(-1, self.vocab), targets.reshape(-1))

    def example_batch(self, device="cpu", generator=None):
        t = torch.randint(0, self.vocab, (self.batch, self.seq_len + 1), device=device, generator=generator)
        return t[:, :-1], t[:, 1:]
