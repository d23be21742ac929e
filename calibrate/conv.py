"""conv2d over the shapes the reference architectures use, each phase timed on its own.

Shapes come from the architectures' op graphs (``perfmodel.architectures``),
so they follow the models.  Forward is ``F.conv2d``; the two gradients are
``aten.convolution_backward`` with one output each (data, weight), so every
IR phase has its own measurement.
"""
from __future__ import annotations

from perfmodel.ops import OpKind, conv_out_hw

from .devices import Context, matmul_precision, torch_dtype
from .tasks import Task
from .timing import measure

SHAPE_KEYS = ("n", "c", "h", "w", "k", "r", "s", "stride_h", "stride_w", "pad_h", "pad_w")


def reference_shapes(conv_models) -> list[dict]:
    """Unique conv2d shapes in the forward graphs of ``(model, width, knobs)`` configurations."""
    from perfmodel.architectures import MODELS, build_graph
    seen, out = set(), []
    for model, width, knobs in conv_models:
        if model not in MODELS:  # architecture not available in this checkout
            continue
        for op in build_graph(model, width, **knobs).fwd:
            if op.kind != OpKind.CONV2D:
                continue
            key = tuple(int(op.dims[k]) for k in SHAPE_KEYS)
            if key not in seen:
                seen.add(key)
                out.append(dict(zip(SHAPE_KEYS, key)))
    return out


def _point(ctx: Context, dtype, d):
    import torch
    from torch.nn import functional as F
    td = torch_dtype(dtype)
    x = torch.randn(d["n"], d["c"], d["h"], d["w"], device=ctx.device, dtype=td)
    w = torch.randn(d["k"], d["c"], d["r"], d["s"], device=ctx.device, dtype=td)
    stride, pad = (d["stride_h"], d["stride_w"]), (d["pad_h"], d["pad_w"])
    p, q = conv_out_hw(d)
    gy = torch.randn(d["n"], d["k"], p, q, device=ctx.device, dtype=td)

    def bwd(mask):
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, stride, pad, (1, 1), False,
                                                           (0, 0), 1, mask)
    with matmul_precision(dtype, ctx.device):
        tf = measure(lambda: F.conv2d(x, w, None, stride, pad), **ctx.timing)
        td_ = measure(bwd([True, False, False]), **ctx.timing)
        tw = measure(bwd([False, True, False]), **ctx.timing)
    return {"dtype": dtype, **d, "fwd_s": tf.seconds, "bwd_data_s": td_.seconds, "bwd_weight_s": tw.seconds,
            "spread": round(max(tf.spread, td_.spread, tw.spread), 4)}


def tasks(ctx: Context) -> list[Task]:
    out = []
    for dtype in ctx.dtypes:
        if dtype == "fp8":
            continue
        for d in reference_shapes(ctx.plan.conv_models):
            p, q = conv_out_hw(d)
            if 6 * d["n"] * d["k"] * p * q * d["c"] * d["r"] * d["s"] > ctx.plan.conv_max_flops:
                continue
            out.append(Task("conv", f"conv {dtype} {d['c']}->{d['k']} {d['r']}x{d['s']}",
                            lambda dt=dtype, d=d: _point(ctx, dt, d)))
    return out
