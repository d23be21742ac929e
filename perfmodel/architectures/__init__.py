"""Reference architectures: name -> :class:`ArchSpec` (knobs + op-graph builder)."""
from __future__ import annotations

import importlib

from ..errors import PerfmodelError
from ..graph import ModelGraph
from ..ops import DTYPE_BYTES
from .base import ArchSpec, Knob
from .size import check_size, check_width

_MODULES = ("charlm", "wordlm", "speech", "mlp", "transformer", "resnet")
MODELS: dict[str, ArchSpec] = {name: importlib.import_module(f"{__name__}.{name}").SPEC for name in _MODULES}


def get_spec(name: str) -> ArchSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise PerfmodelError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}") from None


def build_graph(name: str, width, dtype: str = "fp32", **knobs) -> ModelGraph:
    """Build ``name`` at ``width`` (an int or an int array for vectorized sweeps)."""
    spec = get_spec(name)
    check_width(width)
    if dtype not in DTYPE_BYTES:
        raise PerfmodelError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPE_BYTES)}")
    resolved = spec.resolve(knobs)
    check_size(spec, width, dtype, resolved)
    return spec.build(width, dtype=dtype, **resolved)


__all__ = ["MODELS", "ArchSpec", "Knob", "build_graph", "check_size", "get_spec"]
