"""ResNet-18/34 with a width multiplier, mirroring :mod:`perfmodel.architectures.resnet`.

Written out here (torchvision is not a dependency); parameter names follow
torchvision's ``resnet18`` (``conv1``, ``layer2.0.downsample.0``, ``fc``), so at
width 64 the parameter count equals torchvision's (11,689,512 for ResNet-18).
"""
import torch
from torch import nn
from torch.nn import functional as F

from ..architectures.resnet import STAGE_BLOCKS


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, width, batch=32, variant=18, image_size=224, classes=1000):
        super().__init__()
        self.batch, self.image_size, self.classes = batch, image_size, classes
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = width
        for s, blocks in enumerate(STAGE_BLOCKS[variant]):
            c = width * 2 ** s
            stage = [BasicBlock(c_in if b == 0 else c, c, 2 if (s > 0 and b == 0) else 1) for b in range(blocks)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*stage))
            c_in = c
        self.stages = len(STAGE_BLOCKS[variant])
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for s in range(self.stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def example_batch(self, device="cpu", generator=None):
        x = torch.randn(self.batch, 3, self.image_size, self.image_size, device=device, generator=generator)
        y = torch.randint(0, self.classes, (self.batch,), device=device, generator=generator)
        return x, y
