"""The fitted step-count law as data: ``steps(M, D, B)``, JSON load/save.  Imports no torch.

Size law (fitted at the reference batch ``batch_ref``)::

    S(M, D) = a · D^γ · M^(−k) + b

with M the trainable-parameter count and D the training-set size in the
model's unit (characters, words or examples; see ``units``).  Batch law
(McCandlish et al. 2018, eq. 2.11, S = S_min (1 + B_noise / B)) scales it to
another batch B::

    S(M, D, B) = S(M, D) · (1 + B_noise/B) / (1 + B_noise/batch_ref)

and an optional plateau keeps at least ``e_min`` passes over the data::

    S ≥ e_min · D / (B · tokens_per_example)

The law file is JSON with these fields plus confidence intervals, fit
diagnostics and provenance; it is written atomically (temp file + os.replace).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PerfmodelError

FORMULA = ("steps = (a * D**gamma * M**(-k) + b) * (1 + b_noise/B) / (1 + b_noise/batch_ref), "
           "at least e_min * D / (B * tokens_per_example)")
_REQUIRED = ("model", "a", "k", "gamma", "b", "batch_ref", "tokens_per_example")


@dataclass
class StepLaw:
    model: str
    a: float
    k: float
    gamma: float
    b: float
    batch_ref: float
    tokens_per_example: float = 1.0
    e_min: float | None = None          # plateau: minimum epochs (None: no plateau)
    b_noise: float | None = None        # batch law (None: steps do not depend on B)
    target: str = "steps_to_min"
    units: dict[str, str] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)   # parameter -> [lo, hi] (95 %)
    n_runs: int = 0
    heldout_error: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    batch_law: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    formula: str = FORMULA

    def steps(self, M, D, B=None) -> np.ndarray:
        """Predicted steps for parameter counts ``M``, dataset sizes ``D``, batches ``B`` (broadcast)."""
        M, D = np.asarray(M, dtype=float), np.asarray(D, dtype=float)
        B = np.asarray(self.batch_ref if B is None else B, dtype=float)
        if (M <= 0).any() or (D <= 0).any() or (B <= 0).any():
            raise PerfmodelError("step law needs positive parameter counts, dataset sizes and batches")
        s = self.a * D ** self.gamma * M ** (-self.k) + self.b
        if self.b_noise:
            s = s * (1 + self.b_noise / B) / (1 + self.b_noise / self.batch_ref)
        if self.e_min:
            s = np.maximum(s, self.e_min * D / (B * self.tokens_per_example))
        return s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "law") -> "StepLaw":
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise PerfmodelError(f"{where} lacks field(s) {', '.join(missing)}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("a", "k", "gamma", "b", "batch_ref", "tokens_per_example"):
            if not isinstance(known[k], (int, float)) or not np.isfinite(known[k]):
                raise PerfmodelError(f"{where}: field {k}={known[k]!r} must be a finite number")
        return cls(**known)


def save_law(law: StepLaw, path: str | Path) -> Path:
    """Write ``law`` as JSON atomically: a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(law.to_dict()), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _file_mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def load_law(path: str | Path) -> StepLaw:
    from ..jsonfile import read_json_object
    path = Path(path)
    d = read_json_object(path, "law")
    return StepLaw.from_dict(d, where=f"law file {str(path)!r}")


def default_law_path(model: str) -> Path:
    """The law shipped with perfmodel for ``model`` (``perfmodel/steps/default_laws/<model>.json``)."""
    return Path(__file__).with_name("default_laws") / f"{model}.json"


def jsonable(o):
    """JSON-ready copy: numpy scalars and arrays to Python, NaN and infinities to null."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o
