"""Fixed per-kernel cost with tiny ops: standalone dispatch, and per kernel inside a training step.

``dispatch``: one tiny op called on its own, the way the GEMM/memory/conv
points are timed (median over mul, add, mm, copy of 4x4 tensors).

``<op kind>``: the cost of one of the op IR's kernels of that kind inside a
training step -- forward call, autograd bookkeeping and backward kernels --
measured as a chain of ``N`` tiny layers run forward and backward and divided
by the number of kernels :mod:`perfmodel.ops` counts for that chain (forward
kernels plus those its backward rules derive).  So the unit is the IR's
kernel, and the roofline's ``kernels x overhead`` reproduces the chain:

=============  ==========================================  =========================
kind           chain of tiny layers                         IR kernels per layer
=============  ==========================================  =========================
elementwise    tanh, x * w, x + w  (rotating)               1 fwd + 1 bwd
reduction      softmax                                      1 fwd + 1 bwd
copy           transpose + contiguous                       1 fwd + 1 bwd
gemm           nn.Linear(8, 8) (+ bias)                     3 GEMMs + 1 bias-grad reduction
conv2d         nn.Conv2d(2, 2, 3, padding=1, no bias)       1 fwd + bwd data + bwd weight
embedding      nn.Embedding(16, 8) lookups                  1 fwd + 1 bwd
loss           F.cross_entropy                              2 fwd + 2 bwd (log_softmax, nll)
optimizer      SGD step + zero_grad, per nn.Linear          1 per parameter group
=============  ==========================================  =========================

``default`` is the median of the kinds measured.

Per call, not per kernel: a training step calls ``loss.backward()`` once and
``optimizer.step()`` + ``zero_grad()`` once, whatever the model's size, and
each call has a fixed cost (autograd engine start, the optimizer's Python and
tensor grouping).  The chains above spread it over ``N`` layers, so it is
measured apart: the ``gemm`` and ``optimizer`` chains are also timed with one
layer, and the intercept of the line through ``(1, t_1)`` and ``(N, t_N)`` is
``backward_call`` and ``optimizer_call`` (their size against a small step:
``docs/accuracy.md``, "Calibration").
"""
from __future__ import annotations

import statistics

from .backend import place
from .devices import Context
from .tasks import Probe
from .timing import measure

#: IR kernels per chain layer (see the table above); gemm's bias-grad reduction is removed separately
IR_KERNELS = {"elementwise": 2, "reduction": 2, "copy": 2, "conv2d": 3, "embedding": 2, "loss": 4,
              "optimizer": 1, "gemm": 3}
#: per-call keys of ``overhead_us`` and the chain whose intercept measures each
CALL_CHAINS = {"backward_call": "gemm", "optimizer_call": "optimizer"}


def _dispatch_fns(device):
    import torch
    device = place(device)
    a, b = torch.randn(4, 4, device=device), torch.randn(4, 4, device=device)
    dst = torch.empty_like(a)
    return [lambda: torch.mul(a, b), lambda: torch.add(a, b), lambda: torch.mm(a, b), lambda: dst.copy_(a)]


def dispatch_s(device: str, timing: dict) -> float:
    """Seconds of one tiny op called on its own: the median over mul, add, mm and copy of 4x4 tensors."""
    return statistics.median(measure(f, **timing).seconds for f in _dispatch_fns(device))


def _chain(kind: str, n: int, device: str):
    """A callable running one forward + backward (or optimizer step) of ``n`` tiny layers.

    Gradients are reset to ``None`` before each call (as ``zero_grad(set_to_none=True)``
    in a training loop), so no accumulation kernels are timed.
    """
    fn, params = _chain_and_params(kind, n, device)
    if not params:
        return fn

    def step():
        for p in params:
            p.grad = None
        fn()
    return step


def _chain_and_params(kind: str, n: int, device: str):
    import torch
    from torch import nn
    from torch.nn import functional as F

    device = place(device)
    x0 = torch.randn(4, 8, device=device)
    if kind == "elementwise":
        ws = [torch.randn(4, 8, device=device, requires_grad=True) for _ in range(n)]

        def fn():
            y = x0
            for i, w in enumerate(ws):
                y = torch.tanh(y) if i % 3 == 0 else (y * w if i % 3 == 1 else y + w)
            y.backward(torch.ones_like(y))
        return fn, ws
    if kind == "reduction":
        def fn():
            y = x0.detach().requires_grad_()
            for _ in range(n):
                y = torch.softmax(y, dim=-1)
            y.backward(torch.ones_like(y))
        return fn, []
    if kind == "copy":
        def fn():
            y = x0.detach().requires_grad_()
            for _ in range(n):
                y = y.t().contiguous()
            y.backward(torch.ones_like(y))
        return fn, []
    if kind == "gemm":
        net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(n)]).to(device)
        return lambda: net(x0).backward(torch.ones(4, 8, device=device)), list(net.parameters())
    if kind == "conv2d":
        net = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=1, bias=False) for _ in range(n)]).to(device)
        xc = torch.randn(1, 2, 5, 5, device=device)
        return lambda: net(xc).backward(torch.ones(1, 2, 5, 5, device=device)), list(net.parameters())
    if kind == "embedding":
        embs = [nn.Embedding(16, 8).to(device) for _ in range(n)]
        idx = torch.randint(0, 16, (4,), device=device)
        g = torch.ones(4, 8, device=device)
        return lambda: torch.autograd.backward([e(idx) for e in embs], [g] * n), [e.weight for e in embs]
    if kind == "loss":
        logits = [torch.randn(4, 10, device=device, requires_grad=True) for _ in range(n)]
        target = torch.randint(0, 10, (4,), device=device)
        return lambda: torch.autograd.backward([F.cross_entropy(z, target) for z in logits]), logits
    if kind == "optimizer":
        net = nn.Sequential(*[nn.Linear(8, 8) for _ in range(n)]).to(device)
        grads = [torch.randn_like(p) for p in net.parameters()]
        opt = torch.optim.SGD(net.parameters(), lr=1e-6)

        def fn():
            for p, g in zip(net.parameters(), grads, strict=True):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
        return fn, []
    raise ValueError(f"no overhead chain for kind {kind!r}")


#: tiny-op timings are cheap but jittery: more samples and longer blocks than the plan's default
MIN_REPEATS, MIN_BLOCK_S = 7, 2e-3
#: the chains timed, in the order ``overhead_us`` lists them
KINDS = ("elementwise", "reduction", "copy", "conv2d", "embedding", "loss", "optimizer", "gemm")
DISPATCH_OPS = 4  # mul, add, mm, copy (``_dispatch_fns``)


def per_call(t_1: float, t_n: float, n: int) -> float:
    """Intercept of the line through ``(1, t_1)`` and ``(n, t_n)``: the fixed cost of one call (>= 0)."""
    per_layer = (t_n - t_1) / (n - 1)
    return max(t_1 - per_layer, 0.0)


def overheads_from(t: dict, n: int) -> dict:
    """``overhead_us`` (microseconds) from seconds per call: ``dispatch0..3`` (the tiny ops), each kind's
    ``n``-layer chain (``t[kind]``) and the 1-layer chains of :data:`CALL_CHAINS` (``t["gemm@1"]``...).

    per kernel = t[kind] / (n x IR_KERNELS[kind]), less, for ``gemm``, the bias-grad reduction's share;
    ``default`` = median of the kinds; ``<call>`` = :func:`per_call` of the chain's 1- and n-layer times.
    """
    out = {"dispatch": statistics.median(t[f"dispatch{i}"] for i in range(DISPATCH_OPS)) * 1e6}
    for kind in KINDS:
        per = t[kind] / (n * IR_KERNELS[kind])
        if kind == "gemm":  # a Linear layer is 3 GEMMs + 1 bias-grad reduction in the IR
            per = max((per * IR_KERNELS["gemm"] - out["reduction"] * 1e-6) / IR_KERNELS["gemm"], 0.0)
        out[kind] = per * 1e6
    out["default"] = statistics.median(v for k, v in out.items() if k != "dispatch")
    for key, kind in CALL_CHAINS.items():
        out[key] = per_call(t[f"{kind}@1"], t[kind], n) * 1e6
    return {k: round(v, 3) for k, v in out.items()}


def probes(ctx: Context) -> list[Probe]:
    """One probe: the dispatch ops, every kind's chain of ``overhead_chain`` layers, and the 1-layer
    chains whose intercepts give the per-call costs."""
    n = ctx.plan.overhead_chain

    def setup():
        fns = {f"dispatch{i}": f for i, f in enumerate(_dispatch_fns(ctx.device))}
        fns.update({kind: _chain(kind, n, ctx.device) for kind in KINDS})
        fns.update({f"{kind}@1": _chain(kind, 1, ctx.device) for kind in CALL_CHAINS.values()})
        return fns
    return [Probe("overhead", "per-op overhead", setup,
                  lambda t: overheads_from({k: v.seconds for k, v in t.items()}, n),
                  min_repeats=MIN_REPEATS, min_block_s=MIN_BLOCK_S)]
