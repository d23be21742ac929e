"""MLP classifier mirroring :mod:`perfmodel.architectures.mlp`."""
import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    def __init__(self, width, batch=128, depth=4, input_dim=1024, classes=10):
        super().__init__()
        self.batch, self.input_dim, self.classes = batch, input_dim, classes
        dims = [input_dim] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.head(x)

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def example_batch(self, device="cpu", generator=None):
        x = torch.randn(self.batch, self.input_dim, device=device, generator=generator)
        y = torch.randint(0, self.classes, (self.batch,), device=device, generator=generator)
        return x, y
