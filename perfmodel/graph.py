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

    ``params`` is the exact trainable-parameter count (int, or an int array in
    vectorized sweeps); ``param_groups`` breaks it down by layer path (the
    nanoGPT-style ordered mapping checked against the torch module).
    """

    model: str
    fwd: list[Op]
    params: Any
    param_groups: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def step_ops(self, optimizer: str = "sgd") -> list[Op]:
        """Every op of one training step: forward, backward (derived), optimizer."""
        if optimizer not in PRICED_OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(PRICED_OPTIMIZERS)}")
        opt = optimizer_op(self.params, len(self.param_groups), optimizer)
        return [*self.fwd, *derive_backward(self.fwd), opt]

    def activation_bytes(self):
        """Bytes of forward outputs kept for the backward pass."""
        return sum(op.out_bytes * op.repeat for op in self.fwd if op.saved)
