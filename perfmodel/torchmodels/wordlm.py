"""Word LM (embedding, stacked LSTM, softmax), mirroring :mod:`perfmodel.architectures.wordlm`."""
import torch
from torch import nn
from torch.nn import functional as F


class WordLM(nn.Module):
    def __init__(self, width, batch=32, seq_len=80, layers=2, vocab=10_000):
        super().__init__()
        self.batch, self.seq_len, self.vocab = batch, seq_len, vocab
        self.embedding = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, layers)
        self.decoder = nn.Linear(width, vocab)

    def forward(self, tokens, state=None):
        """tokens: [seq, batch] int64 -> logits [seq, batch, vocab], final (h, c)."""
        out, state = self.lstm(self.embedding(tokens), state)
        return self.decoder(out), state

    def loss(self, tokens, targets):
        logits, _ = self(tokens)
        return F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1))

    def example_batch(self, device="cpu", generator=None):
        t = torch.randint(0, self.vocab, (self.seq_len + 1, self.batch), device=device, generator=generator)
        return t[:-1], t[1:]
