"""Memory bandwidth vs bytes: copy, elementwise, reduction kernels (and, from
:mod:`perfmodel.calibrate.layers`, batch norm and max pooling).

* ``copy``:        ``dst.copy_(src)``                          bytes = 2 x size
* ``elementwise``: ``c = a * b``                                bytes = 3 x size
* ``reduction``:   ``softmax`` over rows of ``ROW`` elements     bytes = 2 x size

Outputs are preallocated: fresh-allocation (page fault) costs are measured on
their own by :mod:`perfmodel.calibrate.allocation`.
"""
from __future__ import annotations

from . import layers
from .backend import place
from .devices import Context
from .tasks import Probe

ROW = 512
BYTES_PER_ELEMENT_MOVED = {"copy": 2, "elementwise": 3, "reduction": 2}


def memory_callable(op: str, numel: int, device: str):
    import torch
    device = place(device)
    a = torch.randn(numel, device=device)
    if op == "copy":
        dst = torch.empty_like(a)
        return lambda: dst.copy_(a)
    out = torch.empty_like(a)
    if op == "elementwise":
        b = torch.randn(numel, device=device)
        return lambda: torch.mul(a, b, out=out)
    rows = a.view(-1, ROW) if numel % ROW == 0 else a.view(1, -1)
    out = out.view(rows.shape)
    return lambda: torch._softmax(rows, -1, False, out=out)


def _probe(ctx: Context, op: str, nbytes: int) -> Probe:
    numel = max(1, nbytes // (4 * BYTES_PER_ELEMENT_MOVED[op]))

    def point(t):
        return {"op": op, "bytes": numel * 4 * BYTES_PER_ELEMENT_MOVED[op], "time_s": t[op].seconds,
                "spread": round(t[op].spread, 4)}
    return Probe("memory", f"memory {op} {nbytes} B", lambda: {op: memory_callable(op, numel, ctx.device)}, point)


def probes(ctx: Context) -> list[Probe]:
    """Bandwidth curves of the generic kernels, then the curves of batch norm and max pooling
    (:mod:`perfmodel.calibrate.layers`), which belong to the same ``memory`` section."""
    return [_probe(ctx, op, nb) for op in ctx.plan.memory_ops for nb in ctx.plan.memory_bytes] + layers.probes(ctx)
