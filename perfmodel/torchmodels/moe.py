"""A simple top-k mixture of experts with a capacity factor, mirroring :mod:`perfmodel.architectures.moe`.

Tokens are routed by a softmax router (no bias) to their top-k experts; each expert takes at most
``C = expert_capacity(N, E, k, c)`` assignments (in token order; later ones are dropped, as in
GShard/Switch) into a zero-padded ``[E, C, width]`` buffer, all experts run as batched GEMMs, and
the outputs are gathered back, scaled by the gate probabilities and summed over the k choices.
No auxiliary load-balancing loss.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..architectures.ffn import fc_width
from ..architectures.moe import expert_capacity
from .llama import swiglu


class ExpertLinear(nn.Module):
    """E independent ``Linear(d_in, d_out)`` as one ``[E, d_in, d_out]`` weight: ``x[e] @ W[e] (+ b[e])``."""

    def __init__(self, experts, d_in, d_out, bias=True):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's initialization range
        self.weight = nn.Parameter(torch.empty(experts, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(experts, 1, d_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x):  # [E, C, d_in]
        return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)


@torch.no_grad()
def route(expert: torch.Tensor, experts: int, capacity: int):
    """``(buffer row, assignment)`` of every kept assignment; ``expert``: ``[N * k]`` expert ids in token
    order.  Assignments are sorted by expert (stable: token order within one), numbered within their
    expert, and those numbered ``capacity`` or more dropped."""
    order = torch.argsort(expert, stable=True)
    counts = torch.bincount(expert, minlength=experts)
    start = torch.cumsum(counts, 0) - counts
    e_sorted = expert[order]
    rank = torch.arange(expert.numel(), device=expert.device) - start[e_sorted]
    keep = rank < capacity
    return (e_sorted * capacity + rank)[keep], order[keep]


class MoE(nn.Module):
    def __init__(self, width, ffn, experts, top_k, capacity, block="gpt2"):
        super().__init__()
        self.n_experts, self.top_k, self.capacity, self.block = experts, top_k, capacity, block
        bias = block == "gpt2"
        self.router = nn.Linear(width, experts, bias=False)
        self.experts = nn.ModuleDict({"fc": ExpertLinear(experts, width, fc_width(ffn, block), bias),
                                      "proj": ExpertLinear(experts, ffn, width, bias)})

    def forward(self, x):
        shape, w = x.shape, x.shape[-1]
        x = x.reshape(-1, w)
        n, e, k = x.shape[0], self.n_experts, self.top_k
        cap = expert_capacity(n, e, k, self.capacity)
        probs = torch.softmax(self.router(x), dim=-1)                  # [N, E]
        gate, expert = probs.topk(k, dim=-1)                           # [N, k]
        slot, assignment = route(expert.reshape(-1), e, cap)
        token = assignment // k
        buf = x.new_zeros(e * cap, w).index_copy_(0, slot, x[token])   # dispatch
        hidden = self.experts["fc"](buf.view(e, cap, w))
        hidden = swiglu(hidden) if self.block == "llama" else F.gelu(hidden)
        out = self.experts["proj"](hidden).reshape(e * cap, w)
        weighted = out[slot] * gate.reshape(-1)[assignment].unsqueeze(1)
        return x.new_zeros(n, w).index_add_(0, token, weighted).view(shape)   # combine
