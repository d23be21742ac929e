"""DeepSpeech2-style acoustic model, mirroring :mod:`perfmodel.architectures.speech`.

Conv shapes come from the builder's :data:`CONV_LAYERS` (one source of truth);
the LSTM input size from its :func:`conv_stack_out`, so a wrong size formula
fails here as a shape error in the first LSTM.
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..architectures.speech import CONV_CHANNELS, CONV_LAYERS, conv_stack_out


class Speech(nn.Module):
    def __init__(self, width, batch=32, seq_len=300, rnn_layers=4, freq_bins=161, symbols=29, target_len=40):
        super().__init__()
        self.batch, self.seq_len, self.freq_bins = batch, seq_len, freq_bins
        self.symbols, self.target_len = symbols, target_len
        c = 1
        for i, (name, kernel, stride, pad) in enumerate(CONV_LAYERS, 1):
            self.add_module(name, nn.Conv2d(c, CONV_CHANNELS, kernel, stride, pad))
            self.add_module(f"bn{i}", nn.BatchNorm2d(CONV_CHANNELS))
            c = CONV_CHANNELS
        c, f, _ = conv_stack_out(freq_bins, seq_len)
        dims = [c * f] + [width] * rnn_layers
        self.rnns = nn.ModuleList(nn.LSTM(d, width, bidirectional=True) for d in dims[:-1])
        self.fc = nn.Linear(width, symbols)

    def forward(self, x):
        """x: [batch, 1, freq, frames] -> logits [frames', batch, symbols]."""
        for i, (name, *_) in enumerate(CONV_LAYERS, 1):
            x = F.hardtanh(getattr(self, f"bn{i}")(getattr(self, name)(x)), 0, 20, inplace=True)
        n, c, f, t = x.shape
        x = x.view(n, c * f, t).permute(2, 0, 1).contiguous()  # [T', batch, features]
        for rnn in self.rnns:
            x, _ = rnn(x)
            x = x.view(t, n, 2, -1).sum(2)  # DS2: sum the two directions
        return self.fc(x)

    def loss(self, x, targets):
        log_probs = self(x).log_softmax(-1)
        t, n, _ = log_probs.shape
        input_lengths = torch.full((n,), t, dtype=torch.long, device=x.device)
        target_lengths = torch.full((n,), targets.shape[1], dtype=torch.long, device=x.device)
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, zero_infinity=True)

    def example_batch(self, device="cpu", generator=None):
        x = torch.randn(self.batch, 1, self.freq_bins, self.seq_len, device=device, generator=generator)
        y = torch.randint(1, self.symbols, (self.batch, self.target_len), device=device, generator=generator)
        return x, y
