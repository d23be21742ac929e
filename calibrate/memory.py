"""Memory bandwidth vs bytes: copy, elementwise, reduction kernels (and, from
:mod:`perfmodel.calibrate.layers`, batch norm and max pooling).

* ``copy``:        ``dst.copy_(src)``                          bytes = 2 x size
* ``elementwise``: ``c = a * b``                                bytes = 3 x size
* ``reduction``:   ``softmax`` over rows of ``ROW`` elements     bytes = 2 x size

Outputs are preallocated: fresh-allocation (page fault) costs are measured on
their own by :mod:`perfmodel.calibrate.allocation`.

Cache state (CPU), the convention of :mod:`perfmodel.calibrate.gemm`: in a training step an op's
first input was usually just produced (the previous op's output, in cache), while its other inputs
(a weight, a tensor saved in the forward pass) were last touched long before, and its output is a
new tensor whose lines are in no cache.  So the first input stays put (hot), and the second input
and the output rotate through pools larger than the last-level cache (``gemm.COLD_POOL_BYTES``).
Timed hot, an elementwise op on 1 MiB ran 3.4x faster than so (``docs/accuracy.md``,
"Calibration"), and steps' memory-bound ops ran slower than a hot curve priced them.
On GPUs the operands are timed in place.
"""
from __future__ import annotations

from . import gemm, layers
from .backend import place
from .devices import Context
from .tasks import Probe

ROW = 512
BYTES_PER_ELEMENT_MOVED = {"copy": 2, "elementwise": 3, "reduction": 2}


def memory_callable(op: str, numel: int, device: str):
    """The kernel of ``op`` over ``numel`` fp32 elements: first input hot, the rest cold on a CPU
    (module docstring)."""
    import torch
    gpu, device = device != "cpu", place(device)
    a = torch.randn(numel, device=device)
    if op == "elementwise":
        bs = [torch.randn(numel, device=device)] if gpu else _cold(numel, device, "in")
    outs = [torch.empty_like(a)] if gpu else _cold(numel, device, "out")
    if op == "reduction":
        shape = (-1, ROW) if numel % ROW == 0 else (1, -1)
        a, outs = a.view(shape), [o.view(shape) for o in outs]
    state = {"i": 0}

    def call():
        i = state["i"] = state["i"] + 1
        out = outs[i % len(outs)]
        if op == "copy":
            return out.copy_(a)
        if op == "elementwise":
            return torch.mul(a, bs[i % len(bs)], out=out)
        return torch._softmax(a, -1, False, out=out)
    return call


def _cold(numel: int, device: str, pool: str) -> list:
    """Flat views of ``numel`` elements rotating through one of the cold pools of :mod:`perfmodel.calibrate.gemm`."""
    return [v.view(-1) for v in gemm._cold_copies(numel, 1, False, 1, "fp32", device, pool=pool)]


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
