"""Layer emitters shared by the architecture builders.

Each method appends the forward op(s) one framework layer launches and
records that layer's parameters, so a builder reads like the torch module it
mirrors (``perfmodel/torchmodels``).  Backward ops are derived
(:func:`perfmodel.ops.derive_backward`), except the few kernels no forward op's rule
derives (:meth:`GraphBuilder.backward_only_op`).
"""
from __future__ import annotations

from ..graph import ModelGraph
from ..ops import RNN_CELLS, Op, OpKind


def lstm_params(cell: str, input_size, hidden, directions: int = 1):
    """Parameters of ``nn.LSTM``/``nn.GRU``/``nn.RNN`` for one layer (both biases)."""
    g = RNN_CELLS[cell]["gates"]
    return directions * (g * hidden * input_size + g * hidden * hidden + 2 * g * hidden)


class GraphBuilder:
    def __init__(self, model: str, dtype: str = "fp32"):
        self.model, self.dtype = model, dtype
        self.fwd: list[Op] = []
        self.backward_only: dict[str, list[Op]] = {}
        self.param_groups: dict[str, object] = {}
        self.tied: dict[str, str] = {}

    # -- bookkeeping -------------------------------------------------------
    def params(self, path: str, count) -> None:
        if path in self.param_groups:
            raise ValueError(f"parameter group {path!r} registered twice")
        self.param_groups[path] = count

    def op(self, kind, path, dims, repeat=1, kernels=1, saved=True, attrs=None, **meta) -> Op:
        o = Op(kind, path, dims, self.dtype, "fwd", repeat, saved, {"kernels": kernels, **meta}, attrs or {})
        self.fwd.append(o)
        return o

    def backward_only_op(self, kind, path, dims, phase, repeat=1, kernels=1) -> Op:
        """A kernel autograd runs in the backward pass that no forward op's rule derives, serving the
        output of the latest forward op (``ModelGraph.backward_only``)."""
        o = Op(kind, path, dims, self.dtype, phase, repeat, saved=False,
               meta={"kernels": kernels, "backward_only": True})
        self.backward_only.setdefault(self.fwd[-1].path, []).append(o)
        return o

    def build(self, **config) -> ModelGraph:
        total = sum(self.param_groups.values())
        return ModelGraph(self.model, self.fwd, total, dict(self.param_groups), config,
                          {k: list(v) for k, v in self.backward_only.items()}, dict(self.tied))

    # -- layers ------------------------------------------------------------
    def linear(self, path, tokens, d_in, d_out, bias=True, first_layer=False, repeat=1, saved=True):
        """``nn.Linear``: y = x @ W^T + b, one (add)mm kernel.  ``saved=False``: y is not kept for
        backward (its consumer's gradient does not need it: a copy, a residual add)."""
        self.params(path, d_in * d_out + (d_out if bias else 0))
        return self.op(OpKind.GEMM, path, {"m": tokens, "n": d_out, "k": d_in}, repeat, saved=saved,
                       attrs={"weight": "b", "trans_b": True, "bias": bias, "first_layer": first_layer})

    def gemm(self, path, m, n, k, batch=1, repeat=1, both_activations=True):
        """Activation x activation product (attention scores), no parameters."""
        return self.op(OpKind.GEMM, path, {"m": m, "n": n, "k": k, "batch": batch}, repeat,
                       attrs={"weight": None, "both_activations": both_activations})

    def pointwise(self, path, numel, flops_per_elem=1, n_in=1, n_out=1, repeat=1, kernels=1, saved=True):
        return self.op(OpKind.ELEMENTWISE, path, {"numel": numel, "n_in": n_in, "n_out": n_out,
                                                  "flops_per_elem": flops_per_elem}, repeat, kernels, saved)

    def reduction(self, path, numel, flops_per_elem=5, n_in=1, n_out=1, repeat=1, kernels=1, curve=None):
        """Softmax, layer norm, sums: memory-bound passes over ``numel`` elements.  ``curve`` names
        a measured time-vs-bytes curve of this very kernel (``cost.rates``), used when calibrated."""
        meta = {"curve": curve} if curve else {}
        return self.op(OpKind.REDUCTION, path, {"numel": numel, "n_in": n_in, "n_out": n_out,
                                                "flops_per_elem": flops_per_elem}, repeat, kernels, **meta)

    def embedding(self, path, tokens, vocab, dim):
        self.params(path, vocab * dim)
        return self.op(OpKind.EMBEDDING, path, {"tokens": tokens, "dim": dim, "vocab": vocab})

    def cross_entropy(self, path, tokens, classes, kernels=2):
        """``F.cross_entropy`` = log_softmax + nll_loss."""
        return self.op(OpKind.LOSS, path, {"numel": tokens * classes, "flops_per_elem": 5}, kernels=kernels)

    def rnn(self, path, cell, input_size, hidden, batch, steps, directions=1, first_layer=False):
        """One fused framework RNN layer (``nn.LSTM`` etc., cuDNN/oneDNN)."""
        self.params(path, lstm_params(cell, input_size, hidden, directions))
        for d in range(directions):
            p = path if directions == 1 else f"{path}/{'fwd' if d == 0 else 'rev'}"
            self.op(OpKind.RNN, p, {"hidden": hidden, "input": input_size, "batch": batch, "steps": steps},
                    attrs={"cell": cell, "first_layer": first_layer}, direction=d, directions=directions)

    def conv2d(self, path, n, c, h, w, k, r, s, stride=(1, 1), pad=(0, 0), bias=True, first_layer=False):
        self.params(path, k * c * r * s + (k if bias else 0))
        return self.op(OpKind.CONV2D, path, {"n": n, "c": c, "h": h, "w": w, "k": k, "r": r, "s": s,
                                             "stride_h": stride[0], "stride_w": stride[1],
                                             "pad_h": pad[0], "pad_w": pad[1]},
                       attrs={"first_layer": first_layer})

    def norm(self, path, numel, channels, affine=True, kernels=1, curve=None):
        """Batch/layer norm: ~8 FLOPs/elem, reads x, writes y (saved)."""
        if affine:
            self.params(path, 2 * channels)
        return self.reduction(path, numel, flops_per_elem=8, kernels=kernels, curve=curve)

    def batchnorm(self, path, numel, channels):
        """``nn.BatchNorm2d`` in training mode: a norm whose kernels are timed as their own curve
        (``perfmodel.calibrate.layers``; per-channel statistics over N*H*W run well below copy bandwidth)."""
        return self.norm(path, numel, channels, curve="batchnorm")

    def maxpool(self, path, numel_out, window=9, reads_per_output=4):
        """``nn.MaxPool2d``: a max over ``window`` inputs per output, reading about stride^2 inputs
        per output; timed as its own curve (``perfmodel.calibrate.layers``: scalar code on CPUs)."""
        return self.reduction(path, numel_out, flops_per_elem=window, n_in=reads_per_output, curve="maxpool")
