"""Reading a runs CSV (one row per training run, from ``perfmodel steps measure``) for the fits.

Every row is checked before any fit: the required columns exist, numbers are finite,
parameter counts, dataset sizes, batches and step counts are positive (a run whose
minimum validation loss came at step 0 measured nothing), ``capped`` is a boolean
(true/false, 1/0, yes/no), and the file is UTF-8.  A failing check names the column,
the data row (1 = first row after the header) and what is allowed.

A run that early stopping ended on the unigram plateau (``stop_reason`` ``plateau``,
:func:`perfmodel.steps.train.stop_reason`) never learned beyond unigram statistics: like a run
stopped at the epoch cap, its steps to the minimum are a lower bound, so it is read as capped.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import PerfmodelError

REQUIRED = ("model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min",
            "steps_to_converge", "min_val_loss", "epochs", "wall_s")
NUMERIC = REQUIRED[1:]
OPTIONAL_NUMERIC = ("steps_per_epoch", "tokens_per_example", "b_simple", "b_diversity")
POSITIVE = ("width", "params", "dataset_size", "batch", "steps_to_min", "steps_to_converge")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def read_runs(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a runs CSV as arrays (numbers as float, ``capped`` as bool); one-line errors."""
    path = Path(path)
    name = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            header = list(rows[0].keys()) if rows else []
    except UnicodeDecodeError as e:
        raise PerfmodelError(f"runs file {name!r} is not UTF-8 text (byte {e.start}); "
                             "write it as UTF-8 CSV") from None
    except OSError as e:
        raise PerfmodelError(f"cannot read runs file {name!r}: {e.strerror}") from None
    if not rows:
        raise PerfmodelError(f"runs file {name!r} has no runs")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise PerfmodelError(f"runs file {name!r} lacks column(s) {', '.join(missing)}")
    rows = [r for r in rows if None not in r.values()]  # a row cut short by an interrupted write
    cols = {c: np.array([r[c] for r in rows], dtype=object) for c in header}
    for c in NUMERIC + tuple(c for c in OPTIONAL_NUMERIC if c in header):
        vals = []
        for i, v in enumerate(cols[c]):
            try:
                vals.append(float(v) if v not in ("", None) else math.nan)
            except ValueError:
                raise PerfmodelError(f"column {c} of {name!r} holds non-number {v!r} (data row {i + 1})") from None
        cols[c] = np.array(vals)
        if c in NUMERIC and not np.isfinite(cols[c]).all():
            i = int(np.flatnonzero(~np.isfinite(cols[c]))[0])
            raise PerfmodelError(f"column {c} of {name!r} has non-finite value {cols[c][i]} (data row {i + 1})")
        if c in POSITIVE and (cols[c] <= 0).any():
            i = int(np.flatnonzero(cols[c] <= 0)[0])
            raise PerfmodelError(f"column {c} of {name!r} has {cols[c][i]:g} in data row {i + 1}; "
                                 f"{c} must be positive")
    if "capped" in cols:
        flags = [str(v).strip().lower() for v in cols["capped"]]
        bad = [i for i, v in enumerate(flags) if v not in TRUE + FALSE]
        if bad:
            raise PerfmodelError(f"column capped of {name!r} holds {cols['capped'][bad[0]]!r} in data row "
                                 f"{bad[0] + 1}; allowed: True or False (also 1/0, yes/no)")
        cols["capped"] = np.array([v in TRUE for v in flags])
    else:
        cols["capped"] = np.zeros(len(rows), bool)
    if "stop_reason" in cols:   # ended on the unigram plateau: no learning measured (module doc)
        cols["capped"] = cols["capped"] | np.array([str(v).strip() == "plateau" for v in cols["stop_reason"]])
    return cols


def subset(R: dict[str, np.ndarray], mask) -> dict[str, np.ndarray]:
    return {c: v[mask] for c, v in R.items()}


def tokens_per_example(R) -> float:
    """Tokens (D units) per example: the column, else D / (B · steps per epoch), else 1."""
    if "tokens_per_example" in R and np.isfinite(R["tokens_per_example"]).all():
        return float(np.median(R["tokens_per_example"]))
    if "steps_per_epoch" in R and np.isfinite(R["steps_per_epoch"]).all():
        return float(np.median(R["dataset_size"] / (R["batch"] * R["steps_per_epoch"])))
    return 1.0
