"""Real ``torch.nn.Module`` versions of the reference architectures.

Each module mirrors its analytic builder in ``perfmodel.architectures`` layer
for layer (same parameter count, same kernels), so the cost model can be
checked against real training steps.  Importing this package imports torch;
the predict path never does.
"""
from __future__ import annotations

import importlib

from ..architectures import get_spec


def build_module(name: str, width: int, **knobs):
    """``(module, example_batch_fn)`` for model ``name`` with the builder's knobs.

    ``example_batch_fn(device)`` returns ``(inputs, targets)`` shaped for one
    training step; ``module.loss(inputs, targets)`` computes the scalar loss.
    """
    spec = get_spec(name)
    cfg = spec.resolve(knobs)
    mod_name, cls_name = spec.torch_module.split(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    return cls(width=width, **cfg)
