"""ResNet-18 / ResNet-34 (He et al. 2016, arXiv:1512.03385, Table 1) with a width multiplier.

``width`` is the channel count of the first stage (64 in the paper); the four
stages have width, 2*width, 4*width, 8*width channels and 2-2-2-2 (ResNet-18)
or 3-4-6-3 (ResNet-34) BasicBlocks.  Layout as torchvision's ``resnet18``:

    stem:   conv 7x7/2 (no bias) + BN + ReLU, maxpool 3x3/2 pad 1
    block:  conv 3x3/s + BN + ReLU, conv 3x3 + BN, (+ downsample 1x1/s conv + BN), add, ReLU
    head:   adaptive avgpool to 1x1, Linear(8*width, classes)

A stage's first block has stride 2 (stages 2-4) and a 1x1 downsample on the
identity path; stage 1 keeps the stem's resolution and channels.  Mirrors
:class:`perfmodel.torchmodels.resnet.ResNet` kernel for kernel.
"""
from ..ops import conv_out_hw
from .base import ArchSpec, Knob
from .layers import GraphBuilder

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _conv_bn(g, path, bn_path, n, c, hw, k, r, stride, pad, first_layer=False):
    """conv (no bias) + BatchNorm; returns the output spatial size."""
    op = g.conv2d(path, n, c, hw, hw, k, r, r, (stride, stride), (pad, pad), bias=False,
                  first_layer=first_layer)
    out, _ = conv_out_hw(op.dims)
    g.batchnorm(bn_path, n * k * out * out, k)
    return out


def build(width, batch=32, variant=18, image_size=224, classes=1000, dtype="fp32"):
    g = GraphBuilder("resnet", dtype)
    n = batch
    hw = _conv_bn(g, "conv1", "bn1", n, 3, image_size, width, 7, 2, 3, first_layer=True)
    g.pointwise("relu", n * width * hw * hw)
    hw = conv_out_hw({"h": hw, "w": hw, "r": 3, "s": 3, "stride_h": 2, "stride_w": 2,
                      "pad_h": 1, "pad_w": 1})[0]
    # max over a 3x3 window per output; reads ~stride^2 = 4 inputs per output
    g.maxpool("maxpool", n * width * hw * hw)
    c_in = width
    for s, blocks in enumerate(STAGE_BLOCKS[variant]):
        c = width * 2 ** s
        for b in range(blocks):
            p = f"layer{s + 1}/{b}"
            stride = 2 if (s > 0 and b == 0) else 1
            hw_out = _conv_bn(g, f"{p}/conv1", f"{p}/bn1", n, c_in, hw, c, 3, stride, 1)
            g.pointwise(f"{p}/relu1", n * c * hw_out * hw_out)
            _conv_bn(g, f"{p}/conv2", f"{p}/bn2", n, c, hw_out, c, 3, 1, 1)
            if stride != 1:  # structural: channels change exactly where the stride does
                _conv_bn(g, f"{p}/downsample/0", f"{p}/downsample/1", n, c_in, hw, c, 1, stride, 0)
            g.pointwise(f"{p}/add_relu", n * c * hw_out * hw_out, flops_per_elem=2, n_in=2, kernels=2)
            c_in, hw = c, hw_out
    g.reduction("avgpool", n * c_in * hw * hw, flops_per_elem=1, n_out=0)
    g.linear("fc", n, c_in, classes)
    g.cross_entropy("loss", n, classes)
    return g.build(width=width, batch=batch, variant=variant, image_size=image_size, classes=classes)


SPEC = ArchSpec(
    "resnet", "ResNet-18/34 image classifier; width = channels of the first stage (64 standard)", build,
    {"batch": Knob(32, "images per step"),
     "variant": Knob(18, "depth: ResNet-18 or ResNet-34", choices=tuple(STAGE_BLOCKS)),
     "image_size": Knob(224, "input height = width in pixels"),
     "classes": Knob(1000, "output classes")},
    "perfmodel.torchmodels.resnet:ResNet")
