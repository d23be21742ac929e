"""Character LM on a Recurrent Highway Network, mirroring :mod:`perfmodel.architectures.charlm`."""
import torch
from torch import nn
from torch.nn import functional as F


class RHN(nn.Module):
    """One RHN layer of recurrence depth ``depth`` with coupled carry gate (Zilly et al. 2017)."""

    def __init__(self, input_size, hidden, depth):
        super().__init__()
        self.hidden = hidden
        self.input_proj = nn.Linear(input_size, 2 * hidden)           # W_H, W_T
        self.recurrent = nn.ModuleList(nn.Linear(hidden, 2 * hidden) for _ in range(depth))  # R_H, R_T

    def forward(self, x, s=None):
        """x: [seq, batch, input] -> outputs [seq, batch, hidden], final state."""
        seq, batch, _ = x.shape
        if s is None:
            s = x.new_zeros(batch, self.hidden)
        # unbind (not xin[t]): its backward is one stack of the step gradients, where indexing
        # would zero-fill a full [seq, batch, 2h] gradient per step
        xin = self.input_proj(x).unbind(0)
        outs = []
        for t in range(seq):
            for layer, lin in enumerate(self.recurrent):
                pre = lin(s)
                if layer == 0:
                    pre = pre + xin[t]
                h_pre, t_pre = pre.chunk(2, dim=-1)
                h, g = torch.tanh(h_pre), torch.sigmoid(t_pre)
                s = h * g + s * (1 - g)
            outs.append(s)
        return torch.stack(outs), s


class CharLM(nn.Module):
    def __init__(self, width, batch=32, seq_len=150, depth=10, vocab=98, embed=None):
        super().__init__()
        embed = width if embed is None else embed
        self.batch, self.seq_len, self.vocab = batch, seq_len, vocab
        self.embedding = nn.Embedding(vocab, embed)
        self.rhn = RHN(embed, width, depth)
        self.softmax = nn.Linear(width, vocab)

    def forward(self, tokens, state=None):
        """tokens: [seq, batch] int64 -> logits [seq, batch, vocab]."""
        out, state = self.rhn(self.embedding(tokens), state)
        return self.softmax(out), state

    def loss(self, tokens, targets):
        logits, _ = self(tokens)
        return F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))

    def example_batch(self, device="cpu", generator=None):
        t = torch.randint(0, self.vocab, (self.seq_len + 1, self.batch), device=device, generator=generator)
        return t[:-1], t[1:]
