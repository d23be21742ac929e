"""The op IR: one vocabulary of ops, one cost table, one backward rule set.

Counting convention (stated once, used everywhere)
--------------------------------------------------
* **1 FLOP = one floating-point add or multiply; a multiply-add is 2 FLOPs.**
  A GEMM ``C[m x n] = A[m x k] @ B[k x n]`` therefore costs ``2*m*n*k`` FLOPs
  (the DeepBench and PyTorch ``FlopCounterMode`` convention).  fvcore counts
  one multiply-add as one FLOP, so fvcore's numbers are half of ours for GEMMs
  and convolutions (see ``tests/test_flops_vs_torch.py``).
* **Backward is derived from forward by** :data:`BACKWARD_RULES` **only.**  For
  a GEMM ``Y = X @ W`` the data gradient ``dX = dY @ W^T`` and the weight
  gradient ``dW = X^T @ dY`` are each one GEMM of the same FLOPs, so
  fwd + bwd of a layer with weights is 3x its forward FLOPs.  Elementwise
  and reduction backward passes cost ``BWD_ELEMENTWISE_FLOPS_FACTOR`` times
  their forward FLOPs and read the saved inputs plus the upstream gradient.
* Bytes are counted as each kernel's compulsory traffic: every input read
  once and every output written once (no cache reuse across kernels).

An op holds its sizes and its attributes apart: ``dims`` are the sizes the cost
formulas multiply (Python ints or NumPy integer arrays of one common length: a
sweep over 10,000 widths is one graph whose dims are arrays, and every formula
here is written with ``+ - * //`` and ``numpy`` ufuncs so it broadcasts);
``attrs`` are the layout and role flags and names that select a formula or a
kernel (``trans_b``, ``first_layer``, ``cell``, ...), one value per op, listed per
kind in :data:`OP_ATTRS` (the split ONNX makes between a node's input shapes and
its attributes).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

PHASES = ("fwd", "bwd_data", "bwd_weight", "optimizer")
DTYPE_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1}
DTYPES = tuple(DTYPE_BYTES)  # every dtype the IR, the profiles and the CLI know
BWD_ELEMENTWISE_FLOPS_FACTOR = 2  # d(out)/d(in) evaluation + chain-rule multiply

#: Bytes of optimizer state per parameter element (fp32 master state),
#: and tensors touched per update: sgd reads w, g and writes w; momentum adds
#: one buffer (read+write); adam adds two (m, v).
OPTIMIZER_STATE_TENSORS = {"sgd": 0, "momentum": 1, "adam": 2}
OPTIMIZER_FLOPS_PER_PARAM = {"sgd": 2, "momentum": 4, "adam": 12}


class OpKind:
    GEMM = "gemm"              # dims: m, n, k, [batch]
    CONV2D = "conv2d"          # dims: n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w
    ELEMENTWISE = "elementwise"  # dims: numel, n_in, n_out, flops_per_elem
    REDUCTION = "reduction"    # softmax / layernorm / sums: numel, n_in, n_out, flops_per_elem
    EMBEDDING = "embedding"    # gather: tokens, dim, vocab
    LOSS = "loss"              # cross-entropy / CTC: numel (logits), flops_per_elem
    OPTIMIZER = "optimizer"    # dims: numel
    COPY = "copy"              # numel
    RNN = "rnn"                # fused recurrent layer: hidden, input, batch, steps
    ATTENTION = "attention"    # FlashAttention-2 (perfmodel.ops_flash): batch, heads, kv_heads, seq, head_dim, tile


ALL_KINDS = tuple(v for k, v in vars(OpKind).items() if k.isupper())

#: ``Op.attrs`` each kind takes (absent = the default in brackets):
#:
#: * GEMM ``C = A @ B``: ``weight`` ("b" when B is a parameter [None: both operands are
#:   activations]), ``trans_a`` / ``trans_b`` (operand stored transposed: ``nn.Linear`` is
#:   ``x @ W^T``, trans_b [False]; a forward op that states ``trans_a`` fixes its backward
#:   layouts too), ``bias`` (addmm: ``C = bias + A @ B`` in one kernel [False]),
#:   ``first_layer`` (A is the network's input: no data gradient [False]),
#:   ``both_activations`` (with no weight, B needs a gradient as well [False])
#: * CONV2D: ``first_layer`` [False]
#: * RNN: ``cell`` (a key of :data:`RNN_CELLS`), ``input_mode`` ("linear" | "skip", cuDNN's
#:   CUDNN_LINEAR_INPUT / CUDNN_SKIP_INPUT ["linear"]), ``first_layer`` [False]
#: * OPTIMIZER: ``optimizer`` (a key of :data:`OPTIMIZER_STATE_TENSORS`)
#: * ATTENTION: ``causal`` (key tiles above the diagonal skipped [False]), ``kernel`` (``flash2`` |
#:   ``triton``: the implementation, :data:`perfmodel.ops_flash.KERNEL_RELATIVE_RATE` ["flash2"])
OP_ATTRS = {
    OpKind.GEMM: frozenset({"weight", "trans_a", "trans_b", "bias", "first_layer", "both_activations"}),
    OpKind.CONV2D: frozenset({"first_layer"}),
    OpKind.RNN: frozenset({"cell", "input_mode", "first_layer"}),
    OpKind.OPTIMIZER: frozenset({"optimizer"}),
    OpKind.ATTENTION: frozenset({"causal", "kernel"}),
}
_ATTR_NAMES = frozenset().union(*OP_ATTRS.values())
_NO_ATTRS: frozenset = frozenset()


@dataclass(frozen=True)
class Op:
    """One kernel (or a fused layer) executed ``repeat`` times per training step.

    ``dims``: sizes (ints or integer arrays); ``attrs``: layout and role flags and names
    (:data:`OP_ATTRS`); ``meta``: costing hints (``kernels`` per execution, a measured
    ``curve``, ``backward_only``: a kernel of ``ModelGraph.backward_only``) and annotations of the
    parallel models.
    """

    kind: str
    path: str
    dims: Mapping[str, Any]
    dtype: str = "fp32"
    phase: str = "fwd"
    repeat: Any = 1
    saved: bool = True  # fwd output kept for backward (activation memory)
    meta: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ALL_KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}; allowed: {', '.join(ALL_KINDS)}")
        if not _ATTR_NAMES.isdisjoint(self.dims):
            bad = sorted(_ATTR_NAMES.intersection(self.dims))
            raise ValueError(f"op {self.path!r}: {', '.join(bad)} belong in attrs, not dims")
        allowed = OP_ATTRS.get(self.kind, _NO_ATTRS)
        if not allowed.issuperset(self.attrs):
            bad = sorted(set(self.attrs) - allowed)
            raise ValueError(f"op {self.path!r}: unknown {self.kind} attribute(s) {', '.join(bad)}; "
                             f"allowed: {', '.join(sorted(allowed)) or 'none'}")
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; allowed: {', '.join(PHASES)}")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"unknown dtype {self.dtype!r}; allowed: {', '.join(DTYPE_BYTES)}")

    @property
    def flops(self):
        """FLOPs of one execution (2 per multiply-add)."""
        return COST_TABLE[self.kind](self)[0]

    @property
    def bytes(self):
        """Bytes read + written by one execution."""
        c = COST_TABLE[self.kind](self)
        return c[1] + c[2]

    @property
    def out_bytes(self):
        return COST_TABLE[self.kind](self)[2]

    @property
    def total_flops(self):
        return self.flops * self.repeat

    @property
    def total_bytes(self):
        return self.bytes * self.repeat


# --------------------------------------------------------------------------
# Cost table: kind -> fn(op) -> (flops, bytes_read, bytes_written)
# --------------------------------------------------------------------------
CostFn = Callable[[Op], tuple]
COST_TABLE: dict[str, CostFn] = {}


def register_cost(kind: str):
    def deco(fn: CostFn) -> CostFn:
        if kind in COST_TABLE:
            raise ValueError(f"cost function for {kind!r} registered twice")
        COST_TABLE[kind] = fn
        return fn
    return deco


def _b(op: Op) -> int:
    return DTYPE_BYTES[op.dtype]


@register_cost(OpKind.GEMM)
def _gemm_cost(op):
    d = op.dims
    m, n, k, batch = d["m"], d["n"], d["k"], d.get("batch", 1)
    flops = 2 * m * n * k * batch
    read = (m * k + k * n) * batch
    if op.attrs.get("bias"):  # addmm: C = bias + A @ B, one kernel
        flops, read = flops + m * n * batch, read + n
    return flops, read * _b(op), m * n * batch * _b(op)


def conv_out_hw(d):
    """Output height and width of a conv2d (PyTorch semantics, dilation 1)."""
    p = (d["h"] + 2 * d["pad_h"] - d["r"]) // d["stride_h"] + 1
    q = (d["w"] + 2 * d["pad_w"] - d["s"]) // d["stride_w"] + 1
    return p, q


def conv_gemm_dims(op: Op):
    """(m, n, k) of the implicit GEMM a conv2d phase performs (cuDNN's implicit-GEMM view).

    fwd:        [n*p*q x c*r*s] @ [c*r*s x k]
    bwd_data:   [n*h*w x k*r*s] @ [k*r*s x c]
    bwd_weight: [k x n*p*q]     @ [n*p*q x c*r*s]
    """
    d = op.dims
    p, q = conv_out_hw(d)
    crs = d["c"] * d["r"] * d["s"]
    if op.phase == "bwd_data":
        return d["n"] * d["h"] * d["w"], d["c"], d["k"] * d["r"] * d["s"]
    if op.phase == "bwd_weight":
        return d["k"], crs, d["n"] * p * q
    return d["n"] * p * q, d["k"], crs


@register_cost(OpKind.CONV2D)
def _conv_cost(op):
    d = op.dims
    p, q = conv_out_hw(d)
    macs = d["n"] * d["k"] * p * q * d["c"] * d["r"] * d["s"]
    read = d["n"] * d["c"] * d["h"] * d["w"] + d["k"] * d["c"] * d["r"] * d["s"]
    return 2 * macs, read * _b(op), d["n"] * d["k"] * p * q * _b(op)


@register_cost(OpKind.ELEMENTWISE)
def _elementwise_cost(op):
    d = op.dims
    return d["numel"] * d.get("flops_per_elem", 1), d["numel"] * d.get("n_in", 1) * _b(op), \
        d["numel"] * d.get("n_out", 1) * _b(op)


COST_TABLE[OpKind.REDUCTION] = _elementwise_cost


@register_cost(OpKind.EMBEDDING)
def _embedding_cost(op):
    d = op.dims
    # gather: read tokens ids (8 B each) and rows, write rows; bwd scatter-add counted as 1 FLOP/elem
    rows = d["tokens"] * d["dim"]
    if op.phase == "fwd":
        return 0 * rows, rows * _b(op) + d["tokens"] * 8, rows * _b(op)
    # bwd (torch ``embedding_dense_backward``): zero-fill the whole [vocab x dim] weight gradient,
    # then scatter-add the token rows into it (1 FLOP/elem)
    return rows, rows * _b(op) + d["tokens"] * 8, (rows + d["vocab"] * d["dim"]) * _b(op)


@register_cost(OpKind.LOSS)
def _loss_cost(op):
    # fwd: log-softmax + gather (max, sub, exp, sum, log ~ 5 FLOPs/elem); bwd: softmax - onehot
    d = op.dims
    return (d["numel"] * d.get("flops_per_elem", 5), d["numel"] * d.get("n_in", 1) * _b(op),
            d["numel"] * d.get("n_out", 1) * _b(op))


@register_cost(OpKind.OPTIMIZER)
def _optimizer_cost(op):
    d = op.dims
    opt = op.attrs["optimizer"]
    state = OPTIMIZER_STATE_TENSORS[opt]
    # master weights/state kept in fp32
    return d["numel"] * OPTIMIZER_FLOPS_PER_PARAM[opt], d["numel"] * (2 + state) * 4, d["numel"] * (1 + state) * 4


@register_cost(OpKind.COPY)
def _copy_cost(op):
    n = op.dims["numel"]
    return 0 * n, n * _b(op), n * _b(op)


#: gates per cell and elementwise FLOPs per hidden unit per step (forward)
RNN_CELLS = {
    "relu": {"gates": 1, "pointwise_flops": 2},
    "tanh": {"gates": 1, "pointwise_flops": 2},
    "lstm": {"gates": 4, "pointwise_flops": 18},
    "gru": {"gates": 3, "pointwise_flops": 16},
}


def rnn_components(op: Op) -> list[Op]:
    """A fused RNN layer as the GEMMs and elementwise kernels it performs.

    Forward per layer (cuDNN-style): one input GEMM over all timesteps
    ``[steps*batch x input] @ [input x gates*hidden]`` and, each step, one
    recurrent GEMM ``[batch x hidden] @ [hidden x gates*hidden]`` plus the
    cell's pointwise math.  Backward phases are derived by the usual rules,
    except that the fused library accumulates the recurrent weight gradient
    of all steps in one GEMM ``[hidden x steps*batch] @ [steps*batch x
    gates*hidden]`` (cuDNN's ``cudnnRNNBackwardWeights``; oneDNN likewise).

    ``input_mode="skip"`` is cuDNN's ``CUDNN_SKIP_INPUT``: the input (of the
    hidden size) enters the cell as it is, so there is no input GEMM and no
    input weight -- what DeepBench's ``rnn_bench`` times.
    """
    d, a = op.dims, op.attrs
    cell = RNN_CELLS[a["cell"]]
    g, h, b, t, x = cell["gates"], d["hidden"], d["batch"], d["steps"], d["input"]
    path = op.path
    input_gemm = [] if a.get("input_mode") == "skip" else [
        Op(OpKind.GEMM, f"{path}/input_gemm", {"m": t * b, "n": g * h, "k": x}, op.dtype,
           attrs={"weight": "b", "trans_b": True, "first_layer": a.get("first_layer", False)})]
    fwd = input_gemm + [
        Op(OpKind.GEMM, f"{path}/recurrent_gemm", {"m": b, "n": g * h, "k": h}, op.dtype, repeat=t,
           attrs={"weight": "b", "trans_b": True}),
        Op(OpKind.ELEMENTWISE, f"{path}/cell", {"numel": b * h, "n_in": g + 1, "n_out": 2,
                                                 "flops_per_elem": cell["pointwise_flops"]}, op.dtype, repeat=t),
    ]
    if op.phase == "fwd":
        return fwd
    out = []
    for f in fwd:
        for o in derive_backward_op(f):
            if o.phase != op.phase:
                continue
            if o.phase == "bwd_weight" and f.path.endswith("recurrent_gemm"):
                o = replace(o, dims={**o.dims, "k": t * b}, repeat=1)
            out.append(o)
    return out


@register_cost(OpKind.RNN)
def _rnn_cost(op):
    flops = rd = wr = 0
    for c in rnn_components(op):
        f, r, w = COST_TABLE[c.kind](c)
        flops, rd, wr = flops + f * c.repeat, rd + r * c.repeat, wr + w * c.repeat
    return flops, rd, wr


# --------------------------------------------------------------------------
# Backward rules: kind -> fn(fwd op) -> list of backward ops
# --------------------------------------------------------------------------
BACKWARD_RULES: dict[str, Callable[[Op], list]] = {}


def _bwd(op: Op, phase: str, dims=None, path_suffix: str = "", **kw) -> Op:
    return replace(op, phase=phase, dims=dict(op.dims if dims is None else dims),
                   path=op.path + path_suffix, saved=False, **kw)


def _gemm_bwd(op):
    d, a = op.dims, op.attrs
    m, n, k = d["m"], d["n"], d["k"]
    base = {kk: v for kk, v in d.items() if kk not in ("m", "n", "k")}
    attrs = {kk: v for kk, v in a.items() if kk not in ("bias", "first_layer")}
    out = []
    if not a.get("first_layer"):  # no gradient w.r.t. the network's input
        # dA = dC @ B^T : [m x n] @ [n x k]
        out.append(_bwd(op, "bwd_data", {**base, "m": m, "n": k, "k": n}, attrs=attrs))
    if a.get("weight") == "b":
        # dB = A^T @ dC : [k x m] @ [m x n]
        out.append(_bwd(op, "bwd_weight", {**base, "m": k, "n": n, "k": m}, attrs=attrs))
        if a.get("bias"):  # db = sum over rows of dC
            out.append(Op(OpKind.REDUCTION, op.path + "/bias_grad",
                          {"numel": m * n * d.get("batch", 1), "n_in": 1, "n_out": 0, "flops_per_elem": 1},
                          op.dtype, "bwd_weight", op.repeat, saved=False))
    elif a.get("weight") is None and a.get("both_activations"):
        out.append(_bwd(op, "bwd_data", {**base, "m": k, "n": n, "k": m}, "/grad_b", attrs=attrs))
    return out


def _conv_bwd(op):
    out = [] if op.attrs.get("first_layer") else [_bwd(op, "bwd_data")]
    return out + [_bwd(op, "bwd_weight")]


def _pointwise_bwd(op):
    d = dict(op.dims)
    n_in, n_out = d.get("n_in", 1), d.get("n_out", 1)
    d["flops_per_elem"] = d.get("flops_per_elem", 1) * BWD_ELEMENTWISE_FLOPS_FACTOR
    d["n_in"] = n_in + n_out  # saved inputs + upstream gradient(s)
    d["n_out"] = n_in         # one gradient per input
    return [_bwd(op, "bwd_data", d)]


def _embedding_bwd(op):
    return [_bwd(op, "bwd_weight", meta={**op.meta, "kernels": 2})]  # zero-fill + index_add


def _loss_bwd(op):
    """softmax - onehot, as torch runs it for ``F.cross_entropy``: ``nll_loss_backward`` zero-fills a
    gradient of the logits' size and scatters -1 into it, then ``_log_softmax_backward`` reads that
    and the saved output and writes the input gradient: 2 passes written, 2 read, 3 kernels."""
    return [_bwd(op, "bwd_data", {**op.dims, "flops_per_elem": 2, "n_in": 2, "n_out": 2},
                 meta={**op.meta, "kernels": op.meta.get("kernels", 1) + 1})]


def _rnn_bwd(op):
    return [_bwd(op, "bwd_data"), _bwd(op, "bwd_weight")]


BACKWARD_RULES.update({
    OpKind.GEMM: _gemm_bwd,
    OpKind.CONV2D: _conv_bwd,
    OpKind.ELEMENTWISE: _pointwise_bwd,
    OpKind.REDUCTION: _pointwise_bwd,
    OpKind.EMBEDDING: _embedding_bwd,
    OpKind.LOSS: _loss_bwd,
    OpKind.COPY: lambda op: [_bwd(op, "bwd_data")],
    OpKind.RNN: _rnn_bwd,
})


def derive_backward_op(op: Op) -> list[Op]:
    return BACKWARD_RULES[op.kind](op)


def derive_backward(fwd_ops: list[Op]) -> list[Op]:
    """All backward ops, in reverse forward order."""
    out = []
    for op in reversed(fwd_ops):
        out.extend(derive_backward_op(op))
    return out

