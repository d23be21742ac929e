"""Memory footprint of one training step on one device.

weights    params x dtype bytes (+ a 4-byte fp32 master copy for 16/8-bit training)
gradients  params x dtype bytes
optimizer  params x 4 bytes x state tensors (0 sgd, 1 momentum, 2 adam: m and v)
activations  forward outputs kept for backward (``ModelGraph.activation_bytes``)

With ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models", SC'20, sec. 3.1 and 5) over a data-parallel group of N_d devices the fp32 master copy is
optimizer state (K = 12 bytes per parameter for mixed-precision Adam: master weights, m, v), and::

    stage 1   weights P·b       gradients P·b       optimizer P·K / N_d
    stage 2   weights P·b       gradients P·b / N_d optimizer P·K / N_d
    stage 3   weights P·b / N_d gradients P·b / N_d optimizer P·K / N_d

(b = 2 for 16-bit training: (2 + 2 + 12)·P over the stage's sharding; stage 0 is the first block.)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import ModelGraph
from ..ops import DTYPE_BYTES, OPTIMIZER_STATE_TENSORS


@dataclass(frozen=True)
class MemoryFootprint:
    weights_bytes: object
    gradients_bytes: object
    optimizer_bytes: object
    activations_bytes: object

    @property
    def total_bytes(self):
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes

    def to_dict(self) -> dict:
        return {"weights_bytes": self.weights_bytes, "gradients_bytes": self.gradients_bytes,
                "optimizer_bytes": self.optimizer_bytes, "activations_bytes": self.activations_bytes,
                "total_bytes": self.total_bytes}


def memory_footprint(graph: ModelGraph, dtype: str, optimizer: str) -> MemoryFootprint:
    return parameter_memory(graph.params, dtype, optimizer, graph.activation_bytes())


def parameter_memory(params, dtype: str, optimizer: str, activations_bytes=0, zero: int = 0,
                     dp=1) -> MemoryFootprint:
    """Weights, gradients and optimizer state of ``params`` parameters (int or array), plus
    ``activations_bytes``; ``zero`` > 0 shards them over ``dp`` devices (module docstring)."""
    b = DTYPE_BYTES[dtype]
    master = 4 if b < 4 else 0
    state = params * 4 * OPTIMIZER_STATE_TENSORS[optimizer]
    if zero == 0:
        return MemoryFootprint(params * (b + master), params * b, state, activations_bytes)
    return MemoryFootprint(params * b / (dp if zero >= 3 else 1), params * b / (dp if zero >= 2 else 1),
                           (params * master + state) / dp, activations_bytes)
