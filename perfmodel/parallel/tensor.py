"""Tensor (intra-layer) parallelism over T devices, applied to any op graph.

Megatron-LM (Shoeybi et al. 2019, arXiv:1909.08053, sec. 3) splits an MLP's
first weight matrix by columns and the second by rows, so one all-reduce
per pair of GEMMs suffices in the forward pass (``g``) and one in the backward
pass (``f``).  Here that pairing is *derived* from the op sequence, with no
per-architecture rules, by tracking whether the activation flowing between
ops is replicated on the T devices or sharded along its feature dimension:

weight GEMM / conv, replicated input   column split (n / T): output sharded;
                                       backward all-reduces dX (m x k)          [Megatron f]
weight GEMM / conv, sharded input      row split (k / T) + forward all-reduce of the output
                                       (m x n), output replicated                 [Megatron g]
                                       -- or, when the output is larger than the input
                                       (m*n > m*k), all-gather the input (m x k), column split,
                                       reduce-scatter dX in backward: the cheaper of the two
                                       (all-reduce = reduce-scatter + all-gather in bytes)
GEMM repeated per timestep (recurrent) always column split; a sharded hidden state is
                                       all-gathered (b x h) *every timestep* forward and its
                                       gradient reduce-scattered every timestep backward
fused RNN layer (nn.LSTM ...)          split by hidden units: input GEMM as above, recurrent
                                       GEMM as a per-timestep GEMM, cell math on h/T units
pointwise / norm / copy / activation   on a sharded tensor: 1/T of the elements (per-channel
GEMM (attention)                       norms and per-head attention need no communication);
                                       on a replicated tensor: repeated on every device
cross-entropy on sharded logits        vocab-parallel (Megatron sec. 3): 1/T of the logits and an
                                       all-reduce of 2 fp32 numbers (max, sum of exp) per row
embedding                              vocab-parallel when the table has more rows than the
                                       lookup has tokens (Megatron's word embedding: 1/T of the
                                       table per device, a forward all-reduce of tokens x dim);
                                       else replicated (position embeddings)

For a transformer block this reproduces Megatron exactly: qkv column, attention on
heads/T, proj row + all-reduce, fc column, GELU on 4h/T, fc2 row + all-reduce: two
all-reduces of (tokens x width) forward and two backward per layer.

Weights of split ops (their parameter groups) are divided by T; others are
replicated.

Sequence parallelism (``sequence_parallel``; Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models", arXiv:2205.05198, sec. 4.2.2): the ops on a replicated
tensor (layer norms, residual adds, dropout) run on 1/T of the tokens instead of all of them, their
outputs (the activations they keep, the tensor a pipeline stage sends) are 1/T, and each all-reduce
above becomes a reduce-scatter plus an all-gather of the same tensor (the same bytes on a ring).
Not modelled: the all-reduce of the sequence-parallel norm weights' gradients (2 x width numbers).
Shard sizes use ceil division (the slowest device sets the pace); a split
dimension smaller than T makes the layout invalid.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..graph import ModelGraph
from ..ops import DTYPE_BYTES, Op, OpKind, derive_backward_op, rnn_components
from ..units import ceil_div

#: fp32 statistics per row exchanged by the vocab-parallel cross-entropy (max and sum of exp)
CE_STATS_BYTES_PER_ROW = 2 * 4
#: which dim of a GEMM phase carries a column split (fwd n) or a row split (fwd k);
#: from the backward rules dA = dC @ B^T (m, k_f, n_f) and dB = A^T @ dC (k_f, n_f, m_f)
_COLUMN_DIM = {"fwd": "n", "bwd_data": "k", "bwd_weight": "n"}
_ROW_DIM = {"fwd": "k", "bwd_data": "n", "bwd_weight": "m"}


@dataclass(frozen=True)
class Comm:
    """One tensor-parallel collective on the critical path (``repeat`` times per micro-batch)."""

    kind: str        # allreduce | allgather | reducescatter
    path: str
    phase: str       # fwd | bwd
    nbytes: object   # full message size in bytes (array over configurations)
    repeat: object = 1


@dataclass(frozen=True)
class DeviceOps:
    """One forward op's share of a training step on one device: all its phases plus collectives."""

    path: str
    ops: list
    comm: list
    out_sharded: object = False  # the activation leaving this op is split over the T devices


@dataclass(frozen=True)
class TensorSplit:
    items: list          # DeviceOps, in forward order
    split_paths: tuple   # op paths whose weights are divided by T
    valid: object        # bool (array): every split dimension >= T
    vocab_split: dict = field(default_factory=dict)  # embedding path -> where its table is split

    def param_divisor(self, group: str, tp):
        """T for a parameter group owned by a split op (where it is split), else 1."""
        if group in self.vocab_split:
            return np.where(self.vocab_split[group], tp, 1)
        return tp if group in self._owners else 1

    @property
    def _owners(self) -> frozenset:
        """Every path prefix of a split op (a parameter group owns the ops below its path)."""
        if "_owner_set" not in self.__dict__:
            parts = (p.split("/") for p in self.split_paths)
            object.__setattr__(self, "_owner_set",
                               frozenset("/".join(q[:i]) for q in parts for i in range(1, len(q) + 1)))
        return self.__dict__["_owner_set"]


def _div(x, by, where):
    """``ceil(x / by)`` where ``where`` holds, else ``x`` (arrays broadcast)."""
    return np.where(where, ceil_div(x, by), x) if np.ndim(where) or np.ndim(x) or np.ndim(by) else \
        (ceil_div(x, by) if where else x)


def no_split(graph: ModelGraph) -> TensorSplit:
    """T = 1: each forward op with its derived backward and its backward-only ops, no collectives."""
    return TensorSplit([DeviceOps(op.path, [op, *derive_backward_op(op), *graph.backward_only.get(op.path, ())], [])
                        for op in graph.fwd], (), True)


def _has_bwd_data(op: Op) -> bool:
    return not op.attrs.get("first_layer")


def _weight_io(op: Op):
    """(input elements, output elements) of a weight GEMM or conv, forward."""
    d = op.dims
    if op.kind == OpKind.CONV2D:
        from ..ops import conv_out_hw
        p, q = conv_out_hw(d)
        return d["n"] * d["c"] * d["h"] * d["w"], d["n"] * d["k"] * p * q
    b = d.get("batch", 1)
    return d["m"] * d["k"] * b, d["m"] * d["n"] * b


def _split_weight_op(op: Op, tp, col, row) -> Op:
    d = dict(op.dims)
    if op.kind == OpKind.CONV2D:
        d["k"], d["c"] = _div(d["k"], tp, col), _div(d["c"], tp, row)
    else:
        d["n"], d["k"] = _div(d["n"], tp, col), _div(d["k"], tp, row)
    return replace(op, dims=d)


class _Splitter:
    def __init__(self, tp, config, sequence_parallel: bool = False):
        self.tp = tp
        self.sp = bool(sequence_parallel)
        self.sharded = np.zeros(np.shape(tp), bool) if np.ndim(tp) else False
        self.valid = np.ones(np.shape(tp), bool) if np.ndim(tp) else True
        self.rows = None
        self.split_paths: list[str] = []
        self.vocab_split: dict = {}   # embedding path -> where its table is split (bool array)
        heads = config.get("heads")
        if heads is not None:
            self.valid = self.valid & (np.asarray(heads) % tp == 0)

    def _need(self, dim, where):
        self.valid = self.valid & ~(np.asarray(where) & (np.asarray(dim) < self.tp))

    def _reduce(self, path: str, phase: str, nbytes, rep=1) -> list:
        """An all-reduce of ``nbytes``, or under sequence parallelism its reduce-scatter + all-gather."""
        if self.sp:
            return [Comm("reducescatter", path, phase, nbytes, rep), Comm("allgather", path, phase, nbytes, rep)]
        return [Comm("allreduce", path, phase, nbytes, rep)]

    def weight(self, op: Op, loop: bool) -> DeviceOps:
        tp, sharded = self.tp, self.sharded
        nbytes = DTYPE_BYTES[op.dtype]
        in_el, out_el = _weight_io(op)
        row = np.asarray(sharded) & (not loop) & (np.asarray(out_el) <= np.asarray(in_el))
        col = ~row
        gather = col & np.asarray(sharded)
        self._need(op.dims["k"] if op.kind == OpKind.CONV2D else op.dims["n"], col)
        self._need(op.dims["c"] if op.kind == OpKind.CONV2D else op.dims["k"], row)
        split = _split_weight_op(op, tp, col, row)
        rep = op.repeat
        comm = [*self._reduce(op.path, "fwd", np.where(row, out_el * nbytes, 0), rep),
                Comm("allgather", op.path, "fwd", np.where(gather, in_el * nbytes, 0), rep)]
        if _has_bwd_data(op):
            comm += [Comm("reducescatter", op.path, "bwd", np.where(gather, in_el * nbytes, 0), rep),
                     *self._reduce(op.path, "bwd", np.where(col & ~np.asarray(sharded), in_el * nbytes, 0), rep)]
        self.split_paths.append(op.path)
        self.sharded = col if np.ndim(col) else bool(col)
        if op.kind == OpKind.GEMM:
            self.rows = op.dims["m"] * op.dims.get("batch", 1)
        return DeviceOps(op.path, [split, *derive_backward_op(split)], comm, self.sharded)

    def rnn(self, op: Op) -> DeviceOps:
        """A fused RNN layer split by hidden units; components carry ``recurrence``/``role`` meta."""
        tp, d = self.tp, op.dims
        nbytes = DTYPE_BYTES[op.dtype]
        t, b, h, x = d["steps"], d["batch"], d["hidden"], d["input"]
        sharded_in = np.asarray(self.sharded)
        self._need(h, True)
        ops = []
        for phase in ("fwd", "bwd_data", "bwd_weight"):
            for c in rnn_components(replace(op, phase=phase)):
                role = c.path.rsplit("/", 1)[-1]
                meta = {**c.meta, **{k: v for k, v in op.meta.items() if k != "kernels"},
                        "recurrence": op.path, "role": role}
                if c.kind == OpKind.GEMM:
                    dim = _COLUMN_DIM[c.phase]
                    c = replace(c, dims={**c.dims, dim: ceil_div(c.dims[dim], tp)}, meta=meta)
                else:
                    c = replace(c, dims={**c.dims, "numel": ceil_div(c.dims["numel"], tp)}, meta=meta)
                ops.append(c)
        in_bytes, state_bytes = t * b * x * nbytes, b * h * nbytes
        comm = [Comm("allgather", op.path, "fwd", np.where(sharded_in, in_bytes, 0)),
                Comm("allgather", op.path, "fwd", state_bytes, t),
                Comm("reducescatter", op.path, "bwd", state_bytes, t)]
        if not op.attrs.get("first_layer"):
            comm += [Comm("reducescatter", op.path, "bwd", np.where(sharded_in, in_bytes, 0)),
                     *self._reduce(op.path, "bwd", np.where(sharded_in, 0, in_bytes))]
        self.split_paths.append(op.path)
        self.sharded = np.ones(np.shape(tp), bool) if np.ndim(tp) else True
        self.rows = t * b
        return DeviceOps(op.path, ops, comm, self.sharded)

    def embedding(self, op: Op) -> DeviceOps:
        """Vocab-parallel when the table is larger than its output (Megatron's word embedding):
        each device looks up its 1/T of the rows, one forward all-reduce of (tokens x dim) combines them.
        Smaller tables (position embeddings) stay replicated.  The output is replicated either way."""
        d = op.dims
        vocab_split = np.asarray(d["vocab"]) > np.asarray(d["tokens"])
        nbytes = d["tokens"] * d["dim"] * DTYPE_BYTES[op.dtype]
        comm = self._reduce(op.path, "fwd", np.where(vocab_split, nbytes, 0))
        if np.any(vocab_split):
            self.split_paths.append(op.path)
            self.vocab_split[op.path] = vocab_split
        self.sharded = np.zeros(np.shape(self.tp), bool) if np.ndim(self.tp) else False
        return DeviceOps(op.path, [op, *derive_backward_op(op)], comm, self.sharded)

    def shard(self, op: Op) -> Op:
        """A pointwise op (or an activation x activation GEMM) on 1/T of its data where that is split
        (by features, or under sequence parallelism by tokens)."""
        d = dict(op.dims)
        if op.kind == OpKind.GEMM:  # activation x activation (attention): split its batch (heads)
            key = "batch" if "batch" in d else "m"
            d[key] = _div(d[key], self.tp, self.sharded)
        elif op.kind == OpKind.ATTENTION:  # fused attention (ops_flash): heads and K/V heads split
            d["heads"], d["kv_heads"] = (_div(d[k], self.tp, self.sharded) for k in ("heads", "kv_heads"))
        else:
            d["numel"] = _div(d["numel"], self.tp, True if self.sp else self.sharded)
        return replace(op, dims=d)

    def elementwise(self, op: Op) -> DeviceOps:
        comm = []
        split = self.shard(op)
        if op.kind == OpKind.LOSS and op.phase == "fwd":
            rows = self.rows if self.rows is not None else 0
            comm.append(Comm("allreduce", op.path, "fwd", np.where(self.sharded, rows * CE_STATS_BYTES_PER_ROW, 0)))
            self.sharded = np.zeros(np.shape(self.tp), bool) if np.ndim(self.tp) else False
        return DeviceOps(op.path, [split, *derive_backward_op(split)], comm, self.sharded)


def split(graph: ModelGraph, tp, sequence_parallel: bool = False) -> TensorSplit:
    """Per-device ops and collectives of a step of ``graph`` under tensor parallelism ``tp`` (int or array).

    ``graph`` must already carry the loop annotation of
    :func:`perfmodel.parallel.device.annotate_loops` (GEMMs inside a time loop
    keep their hidden state sharded).  A forward op's backward-only ops
    (``graph.backward_only``) run on 1/T of their data where its output is split.
    ``sequence_parallel``: see the module docstring; every op's output then leaves split.
    """
    if np.ndim(tp) == 0 and int(tp) == 1:
        return no_split(graph)
    s = _Splitter(np.asarray(tp) if np.ndim(tp) else int(tp), graph.config, sequence_parallel)
    items = []
    for op in graph.fwd:
        if op.kind == OpKind.RNN:
            item = s.rnn(op)
        elif op.kind == OpKind.EMBEDDING:
            item = s.embedding(op)
        elif op.kind == OpKind.CONV2D or (op.kind == OpKind.GEMM and op.attrs.get("weight") == "b"):
            item = s.weight(op, loop="recurrence" in op.meta)
        else:
            item = s.elementwise(op)
        extra = graph.backward_only.get(op.path)
        if extra:
            item = replace(item, ops=[*item.ops, *(s.shard(b) for b in extra)])
        items.append(replace(item, out_sharded=True) if sequence_parallel else item)
    return TensorSplit(items, tuple(s.split_paths), s.valid, s.vocab_split)
