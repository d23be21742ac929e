"""The fitted step-count law as data: ``steps(M, D, B)``, JSON load/save.  Imports no torch.

Size law (fitted at the reference batch ``batch_ref``; the forms and how one is chosen
are in :mod:`.forms` and :mod:`.fit`)::

    S(M, D) = a · D^γ · M^(−k) + b + epochs_min · D / (batch_ref · tokens_per_example)

with M the trainable-parameter count and D the training-set size in the
model's unit (characters, words or examples; see ``units``).  Batch law
(McCandlish et al. 2018, eq. 2.11, S = S_min (1 + B_noise / B)) scales it to
another batch B::

    S(M, D, B) = S(M, D) · (1 + B_noise/B) / (1 + B_noise/batch_ref)

and an optional plateau keeps at least ``e_min`` passes over the data::

    S ≥ e_min · D / (B · tokens_per_example)

The law file is JSON with these fields plus confidence intervals, fit
diagnostics and provenance, and, for prediction intervals (:mod:`.uncertainty`), the
bootstrap draws of the parameters, the residual spread ``sigma_log``, the
extrapolation spread ``tau_extrap`` and the measured range, and ``measured_task``: the
model knobs, corpus and optimizer every run shared (a plan at other knobs is told so,
:func:`perfmodel.total.law_task_note`).  Files written before intervals existed load without
them.  It is written atomically (temp file + os.replace).
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

FORMULA = ("steps = (a * D**gamma * M**(-k) + b + epochs_min * D / (batch_ref * tokens_per_example)) "
           "* (1 + b_noise/B) / (1 + b_noise/batch_ref), at least e_min * D / (B * tokens_per_example)")
_REQUIRED = ("model", "a", "k", "gamma", "b", "batch_ref", "tokens_per_example")
DRAW_FIELDS = ("a", "k", "gamma", "b", "epochs_min", "e_min")


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
    form: str = "power"                 # the chosen form (perfmodel.steps.forms)
    epochs_min: float | None = None     # the epochs form's minimum number of epochs
    target: str = "steps_to_min"
    units: dict[str, str] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)   # parameter -> [lo, hi] (95 %)
    n_runs: int = 0
    heldout_error: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    batch_law: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    formula: str = FORMULA
    draws: dict[str, list[float]] | None = None   # bootstrap draws of the fields in DRAW_FIELDS
    sigma_log: float | None = None      # residual sd of log steps (run-to-run noise)
    tau_extrap: float | None = None     # extra sd of log steps per e-fold beyond the measured range
    interval_seed: int = 0              # seed of the predictive normal draws
    measured_range: dict[str, list[float]] = field(default_factory=dict)  # "M", "D" -> [min, max]
    cv: dict[str, Any] = field(default_factory=dict)   # per form: cross-validated extrapolation error
    coverage_80: dict[str, Any] | None = None          # leave-widest-out coverage of the 80 % interval
    measured_task: dict[str, Any] | None = None        # what every run shared: "knobs", "corpus", "optimizer", "lr"

    def fields(self) -> dict[str, float | None]:
        return {f: getattr(self, f) for f in DRAW_FIELDS}

    def batch_factor(self, B=None):
        """(1 + B_noise/B) / (1 + B_noise/batch_ref): the batch law's scaling (1 without one)."""
        if not self.b_noise or B is None:
            return 1.0
        B = np.asarray(B, dtype=float)
        return (1 + self.b_noise / B) / (1 + self.b_noise / self.batch_ref)

    def steps(self, M, D, B=None) -> np.ndarray:
        """Predicted steps for parameter counts ``M``, dataset sizes ``D``, batches ``B`` (broadcast)."""
        M, D = np.asarray(M, dtype=float), np.asarray(D, dtype=float)
        Bv = np.asarray(self.batch_ref if B is None else B, dtype=float)
        if (M <= 0).any() or (D <= 0).any() or (Bv <= 0).any():
            raise PerfmodelError("step law needs positive parameter counts, dataset sizes and batches")
        s = law_steps({**self.fields(), "e_min": None}, M, D, self.batch_ref, self.tokens_per_example)
        s = s * self.batch_factor(Bv)
        if self.e_min:
            s = np.maximum(s, self.e_min * D / (Bv * self.tokens_per_example))
        return s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "law") -> StepLaw:
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise PerfmodelError(f"{where} lacks field(s) {', '.join(missing)}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("a", "k", "gamma", "b", "batch_ref", "tokens_per_example"):
            if not _finite(known[k]):
                raise PerfmodelError(f"{where}: field {k}={known[k]!r} must be a finite number")
        for k in ("batch_ref", "tokens_per_example"):
            if known[k] <= 0:
                raise PerfmodelError(f"{where}: field {k}={known[k]!r} must be positive")
        for k in ("b", "b_noise", "e_min", "epochs_min", "sigma_log", "tau_extrap", "a"):
            v = known.get(k)
            if v is not None and (not _finite(v) or v < 0):
                raise PerfmodelError(f"{where}: field {k}={v!r} must be a number >= 0 (or null)")
        draws = known.get("draws")
        if draws is not None:
            if not isinstance(draws, dict) or any(f not in DRAW_FIELDS for f in draws):
                raise PerfmodelError(f"{where}: field draws must map {', '.join(DRAW_FIELDS)} to lists of numbers")
            lens = {len(v) if isinstance(v, list) else -1 for v in draws.values()}
            if len(lens) != 1 or -1 in lens or not all(_finite(x) for v in draws.values() for x in v):
                raise PerfmodelError(f"{where}: field draws must hold lists of finite numbers of one length")
        return cls(**known)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def law_steps(fields: dict, M, D, batch_ref: float, tokens_per_example: float):
    """S(M, D) at the reference batch from law fields (scalars or arrays of draws; broadcast).

    The epoch floor ``e_min`` is a hard maximum here; the fit used its smooth version.
    """
    a, k, g, b = (np.asarray(fields[f], float) for f in ("a", "k", "gamma", "b"))
    e = fields.get("epochs_min")
    M, D = np.asarray(M, float), np.asarray(D, float)
    spe = D / (batch_ref * tokens_per_example)
    s = a * D ** g * M ** (-k) + b
    if e is not None:
        s = s + np.asarray(e, float) * spe
    if fields.get("e_min") is not None:
        s = np.maximum(s, np.asarray(fields["e_min"], float) * spe)
    return s


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
