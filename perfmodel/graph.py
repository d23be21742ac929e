"""A model's training step as data: forward ops, derived backward, optimizer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ops import Op, OpKind, derive_backward

OPTIMIZERS = ("sgd", "momentum", "adam")


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
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        opt = Op(OpKind.OPTIMIZER, "optimizer", {"numel": self.params}, "fp32", "optimizer", saved=False,
                 meta={"kernels": len(self.param_groups)}, attrs={"optimizer": optimizer})
        return [*self.fwd, *derive_backward(self.fwd), opt]

    def activation_bytes(self):
        """Bytes of forward outputs kept for the backward pass."""
        return sum(op.out_bytes * op.repeat for op in self.fwd if op.saved)
