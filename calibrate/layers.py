"""Kernels whose speed is their own: batch norm and max pooling, as training runs them.

Both are passes over memory in the op IR (``OpKind.REDUCTION``), but neither
runs at copy bandwidth (on a CPU several times slower than the reduction curve gives for
their bytes: ``docs/accuracy.md``, "Calibration").  So each is timed here over sizes, forward and
backward, as a curve of time against the bytes the op IR gives the very op
(:meth:`perfmodel.architectures.layers.GraphBuilder.batchnorm` / ``maxpool``
and their derived backward ops), and the cost model reads that curve for ops
that name it (``meta["curve"]``, :data:`perfmodel.hardware.calibration.LAYER_CURVES`).

Shapes: NCHW with ``CHANNELS`` channels and square planes of up to ``PLANE``
pixels a side; larger sizes add images.  Max pooling is ResNet's stem,
3x3 / stride 2 / pad 1.
"""
from __future__ import annotations

import math

from perfmodel.architectures.layers import GraphBuilder
from perfmodel.ops import conv_out_hw, derive_backward

from .backend import place
from .devices import Context
from .tasks import Probe

CHANNELS = 64
PLANE = 56
POOL = {"kernel_size": 3, "stride": 2, "padding": 1}


def input_shape(numel: int) -> tuple:
    """NCHW input of about ``numel`` elements: ``CHANNELS`` channels, planes up to ``PLANE``."""
    plane = max(1, numel // CHANNELS)
    side = max(2, min(PLANE, math.isqrt(plane)))
    return max(1, plane // (side * side)), CHANNELS, side, side


def ir_ops(layer: str, shape: tuple) -> tuple:
    """(forward op, backward op) the op IR gives ``layer`` on an NCHW input of ``shape``."""
    n, c, h, w = shape
    g = GraphBuilder("calibration")
    if layer == "batchnorm":
        g.batchnorm("bn", n * c * h * w, c)
    else:
        k, s, p = POOL["kernel_size"], POOL["stride"], POOL["padding"]
        ph, pw = conv_out_hw({"h": h, "w": w, "r": k, "s": k, "stride_h": s, "stride_w": s, "pad_h": p, "pad_w": p})
        g.maxpool("pool", n * c * ph * pw)
    fwd = g.fwd[0]
    (bwd,) = derive_backward([fwd])
    return fwd, bwd


def layer_callables(layer: str, shape: tuple, device: str) -> tuple:
    """(forward, backward) callables of the aten kernels ``layer`` launches in a training step."""
    import torch
    aten = torch.ops.aten
    device = place(device)
    x = torch.randn(shape, device=device)
    if layer == "batchnorm":
        c = shape[1]
        weight, bias = torch.ones(c, device=device), torch.zeros(c, device=device)
        mean, var = torch.zeros(c, device=device), torch.ones(c, device=device)
        y, save_mean, save_invstd = aten.native_batch_norm(x, weight, bias, mean, var, True, 0.1, 1e-5)
        dy = torch.randn_like(y)
        return (lambda: aten.native_batch_norm(x, weight, bias, mean, var, True, 0.1, 1e-5),
                lambda: aten.native_batch_norm_backward(dy, x, weight, mean, var, save_mean, save_invstd, True,
                                                        1e-5, [True, True, True]))
    k, s, p = POOL["kernel_size"], POOL["stride"], POOL["padding"]
    y, idx = aten.max_pool2d_with_indices(x, [k, k], [s, s], [p, p], [1, 1], False)
    dy = torch.randn_like(y)
    return (lambda: aten.max_pool2d_with_indices(x, [k, k], [s, s], [p, p], [1, 1], False),
            lambda: aten.max_pool2d_with_indices_backward(dy, x, [k, k], [s, s], [p, p], [1, 1], False, idx))


def _probe(ctx: Context, layer: str, shape: tuple) -> Probe:
    """The forward and backward kernels of ``layer`` on ``shape``: two points, bytes from the op IR."""
    ops = dict(zip(("fwd", "bwd"), ir_ops(layer, shape), strict=True))
    names = {"fwd": layer, "bwd": f"{layer}_bwd"}

    def points(t):
        return [{"op": names[k], "bytes": int(op.bytes), "time_s": t[k].seconds, "spread": round(t[k].spread, 4)}
                for k, op in ops.items()]
    return Probe("memory", f"{layer} {'x'.join(map(str, shape))}",
                 lambda: dict(zip(("fwd", "bwd"), layer_callables(layer, shape, ctx.device), strict=True)), points)


def probes(ctx: Context) -> list[Probe]:
    """One probe per layer and input shape: the plan's memory sizes up to ``layer_max_bytes``, the
    forward pass moving about 2 x 4 bytes per input element (tiny sizes share a shape: once)."""
    shapes = dict.fromkeys(input_shape(max(1, nb // 8)) for nb in ctx.plan.memory_bytes
                           if nb <= ctx.plan.layer_max_bytes)
    return [_probe(ctx, layer, shape) for layer in ctx.plan.layer_ops for shape in shapes]
