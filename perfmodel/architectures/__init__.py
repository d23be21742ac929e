"""Reference architectures: name -> :class:`ArchSpec` (knobs + op-graph builder)."""
from __future__ import annotations

import importlib

from ..errors import PerfmodelError
from ..graph import ModelGraph
from ..ops import DTYPE_BYTES
from .base import ArchSpec, Knob

_MODULES = ("charlm", "wordlm", "speech", "mlp", "transformer", "resnet")
MODELS: dict[str, ArchSpec] = {name: importlib.import_module(f"{__name__}.{name}").SPEC for name in _MODULES}


def get_spec(name: str) -> ArchSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise PerfmodelError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}") from None


def check_width(width) -> None:
    import numpy as np
    w = np.asarray(width)
    if w.dtype.kind not in "iu" or (w <= 0).any():
        bad = w.ravel()[0] if w.dtype.kind not in "iu" else w[w <= 0].ravel()[0]
        raise PerfmodelError(f"width {bad!r} is not allowed; width must be a positive integer")


def build_graph(name: str, width, dtype: str = "fp32", **knobs) -> ModelGraph:
    """Build ``name`` at ``width`` (an int or an int array for vectorized sweeps)."""
    spec = get_spec(name)
    check_width(width)
    if dtype not in DTYPE_BYTES:
        raise PerfmodelError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPE_BYTES)}")
    return spec.build(width, dtype=dtype, **spec.resolve(knobs))


__all__ = ["MODELS", "ArchSpec", "Knob", "build_graph", "get_spec"]
