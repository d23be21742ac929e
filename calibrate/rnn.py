"""Fused recurrent layers as the framework runs them (cuDNN on GPU, oneDNN/native on CPU).

One point per (cell, hidden, batch, steps): a one-layer, one-direction
``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` with ``input = hidden``, in training mode
(parameters and input require grad).  Two sequence lengths per shape, because
a fused layer has a per-call cost (weight re-layout, workspace) besides its
per-step cost; the tables interpolate over log(steps) as well.  ``fwd_s`` times the
forward call; ``bwd_s`` is forward+backward minus forward (data and weight
gradients together; ``perfmodel.cost.residuals`` documents how it is split).
"""
from __future__ import annotations

from perfmodel.ops import Op, OpKind

from .backend import place
from .devices import Context, torch_dtype
from .tasks import Probe

MIN_REPEATS = 4  # each point feeds a two-length fit, which doubles its noise


def rnn_module(cell: str, hidden: int, dtype, device):
    from torch import nn
    if cell == "lstm":
        m = nn.LSTM(hidden, hidden)
    elif cell == "gru":
        m = nn.GRU(hidden, hidden)
    else:
        m = nn.RNN(hidden, hidden, nonlinearity=cell)
    return m.to(device=device, dtype=dtype)


def step_flops(cell, hidden, batch, steps, dtype="fp32") -> float:
    """FLOPs of forward + backward by the op IR (used only to skip points over the budget)."""
    dims = {"hidden": hidden, "input": hidden, "batch": batch, "steps": steps}
    return sum(Op(OpKind.RNN, "x", dims, dtype, ph, attrs={"cell": cell}).flops
               for ph in ("fwd", "bwd_data", "bwd_weight"))


def rnn_callables(dtype, cell, hidden, batch, steps, device) -> dict:
    """``fwd``: the layer's forward call; ``fwd_bwd``: forward and backward, gradients reset first."""
    import torch
    td, device = torch_dtype(dtype), place(device)
    mod = rnn_module(cell, hidden, td, device)
    x = torch.randn(steps, batch, hidden, device=device, dtype=td, requires_grad=True)
    params = list(mod.parameters())

    def fwd():
        return mod(x)[0]

    def fwd_bwd():
        for p in params:
            p.grad = None
        x.grad = None
        out = mod(x)[0]
        out.backward(torch.ones_like(out))
    return {"fwd": fwd, "fwd_bwd": fwd_bwd}


def _probe(ctx: Context, dtype, cell, hidden, batch, steps) -> Probe:
    def point(t):
        fwd, fb = t["fwd"].seconds, t["fwd_bwd"].seconds
        return {"dtype": dtype, "cell": cell, "hidden": hidden, "batch": batch, "steps": steps, "input": hidden,
                "fwd_s": fwd, "bwd_s": max(fb - fwd, 0.05 * fb),
                "spread": round(max(t["fwd"].spread, t["fwd_bwd"].spread), 4)}
    return Probe("rnn", f"rnn {dtype} {cell} h={hidden} b={batch} t={steps}",
                 lambda: rnn_callables(dtype, cell, hidden, batch, steps, ctx.device), point, dtype=dtype,
                 min_repeats=MIN_REPEATS)


def probes(ctx: Context) -> list[Probe]:
    p = ctx.plan
    out = []
    for dtype in ctx.dtypes:
        if dtype == "fp8":  # no fp8 recurrent kernels in the framework
            continue
        for cell in p.rnn_cells:
            for h in p.rnn_hidden:
                for b in p.rnn_batch:
                    for steps in p.rnn_steps:
                        if step_flops(cell, h, b, steps) > p.rnn_max_flops:
                            continue
                        out.append(_probe(ctx, dtype, cell, h, b, steps))
    return out
