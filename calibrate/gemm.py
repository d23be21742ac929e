"""GEMM throughput over (M, N, K), every operand layout training uses, every dtype.

Each point times the kernel ``C = op(A) @ op(B)`` into a preallocated ``C``
(fresh-allocation costs are measured on their own, ``perfmodel.calibrate.allocation``):
``A`` is ``[M x K]`` (stored
``[K x M]`` and viewed transposed when ``trans_a``), ``B`` is ``[K x N]``
(stored ``[N x K]`` when ``trans_b``, i.e. ``x @ W.T`` of ``nn.Linear``).
Batched points (attention) use ``torch.bmm``.  fp8 uses ``torch._scaled_mm``,
which takes only the ``x @ W.T`` layout.

Cache state (CPU): in a training step the ``B`` operand of all three GEMM
layouts -- the weight in ``x @ W^T`` and ``dY @ W``, the saved input in
``dY^T @ X`` -- was last touched long before, while ``A`` was just produced.
So ``A`` stays put (hot) and each call takes the next of several copies of
``B`` laid out in a ``COLD_POOL_BYTES`` buffer, larger than a CPU's last-level
cache: ``B`` comes from memory, as in training.  The output ``C`` of a training
GEMM is a newly allocated tensor whose lines are not in cache either, so ``C``
rotates through a pool of its own (how much a cold ``C`` costs: ``docs/accuracy.md``,
"Calibration").
(On GPUs the operands are timed in place, as DeepBench does.)
"""
from __future__ import annotations

from .backend import place
from .devices import Context, torch_dtype
from .tasks import Probe

COLD_POOL_BYTES = 64 * 2**20
MAX_COPIES = 256
_POOLS: dict = {}


def _operand(rows, cols, transposed, batch, dtype, device):
    import torch
    shape = (cols, rows) if transposed else (rows, cols)
    if batch > 1:
        shape = (batch, *shape)
    t = torch.randn(shape, device=device, dtype=torch.float32)
    t = t.to(torch_dtype(dtype)) if dtype != "tf32" else t
    return t.transpose(-1, -2) if transposed else t


def gemm_callable(batch, m, n, k, trans_a, trans_b, dtype, device, hot: bool = False):
    """The timed GEMM: on a CPU the second operand and the output rotate through cold copies, unless
    ``hot`` (one of each, reused: a weight applied at every time step of a recurrence stays in cache)."""
    import torch
    gpu, device = device != "cpu", place(device)
    if dtype == "fp8":
        if batch > 1 or trans_a or not trans_b:
            raise ValueError("fp8 GEMMs are timed only as x @ W.T (torch._scaled_mm layout)")
        a = _operand(m, k, False, 1, "fp8", device)
        b = _operand(k, n, True, 1, "fp8", device)
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    a = _operand(m, k, trans_a, batch, dtype, device)
    if hot and not gpu:   # one view of each shared pool: hundreds of hot points hold no memory of their own
        b, c = _cold_copies(k, n, trans_b, batch, dtype, device)[0], \
            _cold_copies(m, n, False, batch, dtype, device, pool="out")[0]
        return lambda: (torch.bmm if batch > 1 else torch.mm)(a, b, out=c)
    if gpu:
        b = _operand(k, n, trans_b, batch, dtype, device)
        c = torch.empty((batch, m, n) if batch > 1 else (m, n), device=device, dtype=a.dtype)
        return lambda: (torch.bmm if batch > 1 else torch.mm)(a, b, out=c)
    bs = _cold_copies(k, n, trans_b, batch, dtype, device)
    cs = _cold_copies(m, n, False, batch, dtype, device, pool="out")
    mm = torch.bmm if batch > 1 else torch.mm
    state = {"i": 0}

    def call():
        i = state["i"] = state["i"] + 1
        return mm(a, bs[i % len(bs)], out=cs[i % len(cs)])
    return call


def _cold_copies(rows, cols, transposed, batch, dtype, device, pool="in"):
    """Views of an operand at successive offsets of one shared random pool of ``COLD_POOL_BYTES``
    (outputs rotate through a pool of their own)."""
    import torch
    td = torch_dtype(dtype) if dtype != "tf32" else torch.float32
    key = (device, td, pool)
    if key not in _POOLS:
        _POOLS[key] = torch.randn(COLD_POOL_BYTES // 4, device=device).to(td)
    pool = _POOLS[key]
    numel = rows * cols * batch
    copies = max(1, min(MAX_COPIES, pool.numel() // numel))
    if numel > pool.numel():
        return [_operand(rows, cols, transposed, batch, dtype, device)]
    shape = (cols, rows) if transposed else (rows, cols)
    shape = (batch, *shape) if batch > 1 else shape
    views = [pool[i * numel:(i + 1) * numel].view(shape) for i in range(copies)]
    return [v.transpose(-1, -2) if transposed else v for v in views]


def layout_name(trans_a: bool, trans_b: bool) -> str:
    """``"NT"`` for ``x @ W^T``, ``"NN"`` for ``dY @ W``, ``"TN"`` for ``dY^T @ X`` (BLAS convention)."""
    return f"{'T' if trans_a else 'N'}{'T' if trans_b else 'N'}"


def _probe(ctx: Context, dtype, batch, m, n, k, ta, tb, offgrid: bool = False, hot: bool = False) -> Probe:
    """One point; the library may reject the shape (ValueError, RuntimeError: fp8 needs multiples of 16).
    ``offgrid`` points are marked so: they measure the efficiency lost off the grid
    (``perfmodel.cost.alignment``), not the grid itself; ``hot`` points have their operands in cache
    (``perfmodel.cost.rates.gemm_efficiency``, ``hot``)."""
    def point(t):
        return {"dtype": dtype, "m": m, "n": n, "k": k, "batch": batch, "trans_a": ta, "trans_b": tb,
                "time_s": t["gemm"].seconds, "spread": round(t["gemm"].spread, 4),
                **({"offgrid": True} if offgrid else {}), **({"hot": True} if hot else {})}
    return Probe("gemm", f"gemm {dtype} {batch}x{m}x{n}x{k} {layout_name(ta, tb)}"
                 + (" off-grid" if offgrid else "") + (" hot" if hot else ""),
                 lambda: {"gemm": gemm_callable(batch, m, n, k, ta, tb, dtype, ctx.device, hot)}, point,
                 dtype=dtype, rejects=(ValueError, RuntimeError))


def probes(ctx: Context) -> list[Probe]:
    out = []
    for dtype in ctx.dtypes:
        layouts = ((False, True),) if dtype == "fp8" else ctx.plan.layouts
        for batch, m, n, k in ctx.plan.gemm_shapes():
            for ta, tb in layouts:
                out.append(_probe(ctx, dtype, batch, m, n, k, ta, tb))
        if dtype != "fp8":   # fp8 needs multiples of 16: no alignment below that to measure
            for batch, m, n, k in ctx.plan.gemm_offgrid_shapes():
                for ta, tb in layouts:
                    out.append(_probe(ctx, dtype, batch, m, n, k, ta, tb, offgrid=True))
        if dtype == "fp32" and ctx.kind == "cpu":   # x @ W^T and dY @ W with W in cache
            for m, n, k in ctx.plan.gemm_hot_shapes():
                for ta, tb in ((False, True), (False, False)):
                    out.append(_probe(ctx, dtype, 1, m, n, k, ta, tb, hot=True))
    return out
