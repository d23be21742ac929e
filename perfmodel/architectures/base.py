"""What every architecture declares: its knobs (with defaults) and a builder."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PerfmodelError
from ..graph import ModelGraph

#: largest layer count a builder takes: the op graph lists every layer (1,000 RHN layers build in ~2 s)
MAX_LAYERS = 1000


@dataclass(frozen=True)
class Knob:
    """A model option: one of ``choices``; else an integer >= ``minimum`` (and <= ``maximum`` when
    set; ``kind=int``) or a number > ``minimum`` (``kind=float``).  A default of None lets the builder
    choose."""

    default: Any
    help: str
    choices: tuple = ()
    minimum: int = 1
    kind: type = int
    maximum: int | None = None


@dataclass(frozen=True)
class ArchSpec:
    name: str
    description: str
    build: Callable[..., ModelGraph]  # build(width, batch, seq_len, dtype, **knobs)
    knobs: dict[str, Knob] = field(default_factory=dict)
    torch_module: str = ""  # "perfmodel.torchmodels.charlm:CharLM"

    def resolve(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``overrides``, each checked; unknown knobs rejected."""
        unknown = set(overrides) - set(self.knobs)
        if unknown:
            raise PerfmodelError(f"unknown option {sorted(unknown)[0]!r} for model {self.name!r}; "
                                 f"allowed: {', '.join(self.knobs)}")
        out = {}
        for name, knob in self.knobs.items():
            v = overrides.get(name, knob.default)
            if v is None:
                out[name] = v
                continue
            if not knob.choices and isinstance(v, np.ndarray):  # vectorized grids pass integer arrays
                if v.dtype.kind not in "iu" or (v < knob.minimum).any():
                    raise PerfmodelError(f"{name} values for model {self.name!r} must be integers "
                                         f">= {knob.minimum}")
                out[name] = v
                continue
            if knob.choices:
                if v not in knob.choices:
                    raise PerfmodelError(f"{name}={v!r} is not allowed for model {self.name!r}; "
                                         f"allowed: {', '.join(map(str, knob.choices))}")
            elif knob.kind is float:
                v = self._number(name, v, knob.minimum)
            else:
                try:
                    iv = int(v)
                except (TypeError, ValueError):
                    raise PerfmodelError(f"{name}={v!r} for model {self.name!r} must be an integer "
                                         f">= {knob.minimum}") from None
                if iv != float(v) or iv < knob.minimum:
                    raise PerfmodelError(f"{name}={v!r} for model {self.name!r} must be an integer "
                                         f">= {knob.minimum}")
                if knob.maximum is not None and iv > knob.maximum:
                    raise PerfmodelError(f"{name}={v!r} for model {self.name!r} is not allowed: at most "
                                         f"{knob.maximum} (the op graph lists every layer)")
                v = iv
            out[name] = v
        return out

    def _number(self, name: str, v, minimum) -> float:
        """``v`` as a finite float > ``minimum``, else a one-line error naming it."""
        try:
            fv = float(v)
        except (TypeError, ValueError):
            fv = float("nan")
        if not (fv > minimum and fv < float("inf")):
            raise PerfmodelError(f"{name}={v!r} for model {self.name!r} must be a number > {minimum}")
        return fv
