"""A model's training step as data: forward ops, derived backward, optimizer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ops import OPTIMIZER_STATE_TENSORS, Op, OpKind, derive_backward

#: optimizers whose update step the cost model prices (one OPTIMIZER op, :func:`optimizer_op`)
PRICED_OPTIMIZERS = tuple(OPTIMIZER_STATE_TENSORS)


def optimizer_op(numel, kernels: int, optimizer: str, path: str = "optimizer") -> Op:
    """The update of ``numel`` parameters held in ``kernels`` parameter groups (one kernel each),
    on fp32 state whatever the training dtype."""
    return Op(OpKind.OPTIMIZER, path, {"numel": numel}, "fp32", "optimizer", saved=False,
              meta={"kernels": kernels}, attrs={"optimizer": optimizer})


@dataclass(frozen=True)
class ModelGraph:
    """What an architecture builder returns.

    ``fwd`` holds the forward ops in execution order; their backward ops are derived
    (:func:`perfmodel.ops.derive_backward`).  ``backward_only`` holds the backward kernels
    autograd launches that no single forward op's rule derives (a reused weight's gradient
    accumulation, the backward copy of a chunk or an unbind), keyed by the path of the
    forward op whose output they serve: they are listed right after that op (breakdowns) and
    split with it under tensor parallelism.  ``params`` is the exact trainable-parameter
    count (int, or an int array in vectorized sweeps); ``param_groups`` breaks it down by
    layer path (the nanoGPT-style ordered mapping checked against the torch module).
    ``tied`` maps an op's path to the parameter group whose weight it reuses (GPT-2's LM head
    reads ``wte``): split into pipeline stages, the op's stage keeps a copy of that weight whose
    gradient is all-reduced with the original (:mod:`perfmodel.parallel.pipeline`).
    """

    model: str
    fwd: list[Op]
    params: Any
    param_groups: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    backward_only: dict[str, list[Op]] = field(default_factory=dict)
    tied: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.backward_only:
            paths = [op.path for op in self.fwd]
            bad = [p for p in self.backward_only if paths.count(p) != 1]
            if bad:
                raise ValueError(f"backward-only ops of {', '.join(bad)}: each key must be the path of exactly "
                                 f"one forward op")

    def listed_ops(self) -> list[Op]:
        """The forward ops, each followed by its backward-only ops."""
        if not self.backward_only:
            return list(self.fwd)
        return [o for op in self.fwd for o in (op, *self.backward_only.get(op.path, ()))]

    def step_ops(self, optimizer: str = "sgd") -> list[Op]:
        """Every op of one training step: forward (with the backward-only ops, as listed), backward
        (derived), optimizer."""
        if optimizer not in PRICED_OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(PRICED_OPTIMIZERS)}")
        opt = optimizer_op(self.params, len(self.param_groups), optimizer)
        return [*self.listed_ops(), *derive_backward(self.fwd), opt]

    def activation_bytes(self):
        """Bytes of forward outputs kept for the backward pass."""
        return sum(op.out_bytes * op.repeat for op in self.fwd if op.saved)
