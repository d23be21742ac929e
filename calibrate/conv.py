"""conv2d over the shapes the reference architectures use, each phase timed on its own.

Shapes come from the architectures' op graphs (``perfmodel.architectures``),
so they follow the models.  Forward is ``F.conv2d``; the two gradients are
``aten.convolution_backward`` with one output each (data, weight), so every
IR phase has its own measurement.
"""
from __future__ import annotations

from perfmodel.ops import OpKind, conv_out_hw

from .backend import place
from .devices import Context, torch_dtype
from .tasks import Probe

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
                out.append(dict(zip(SHAPE_KEYS, key, strict=True)))
    return out


def conv_callables(dtype, d, device) -> dict:
    """``fwd`` (``F.conv2d``), ``bwd_data`` and ``bwd_weight`` (``aten.convolution_backward``, one output each)."""
    import torch
    from torch.nn import functional as F
    td, device = torch_dtype(dtype), place(device)
    x = torch.randn(d["n"], d["c"], d["h"], d["w"], device=device, dtype=td)
    w = torch.randn(d["k"], d["c"], d["r"], d["s"], device=device, dtype=td)
    stride, pad = (d["stride_h"], d["stride_w"]), (d["pad_h"], d["pad_w"])
    p, q = conv_out_hw(d)
    gy = torch.randn(d["n"], d["k"], p, q, device=device, dtype=td)

    def bwd(mask):
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, stride, pad, (1, 1), False,
                                                           (0, 0), 1, mask)
    return {"fwd": lambda: F.conv2d(x, w, None, stride, pad), "bwd_data": bwd([True, False, False]),
            "bwd_weight": bwd([False, True, False])}


def _probe(ctx: Context, dtype, d) -> Probe:
    def point(t):
        return {"dtype": dtype, **d, "fwd_s": t["fwd"].seconds, "bwd_data_s": t["bwd_data"].seconds,
                "bwd_weight_s": t["bwd_weight"].seconds, "spread": round(max(x.spread for x in t.values()), 4)}
    shape = f"{d['n']}x{d['c']}x{d['h']}x{d['w']}"
    return Probe("conv", f"conv {dtype} {shape} {d['c']}->{d['k']} {d['r']}x{d['s']}/{d['stride_h']}",
                 lambda: conv_callables(dtype, d, ctx.device), point, dtype=dtype)


def probes(ctx: Context) -> list[Probe]:
    out = []
    for dtype in ctx.dtypes:
        if dtype == "fp8":
            continue
        for d in reference_shapes(ctx.plan.conv_models):
            p, q = conv_out_hw(d)
            if 6 * d["n"] * d["k"] * p * q * d["c"] * d["r"] * d["s"] > ctx.plan.conv_max_flops:
                continue
            out.append(_probe(ctx, dtype, d))
    return out
