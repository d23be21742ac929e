"""What a report is built from, and the readers for its input files.

Every file is optional: a section appears only when its input exists.
Readers raise :class:`~perfmodel.errors.PerfmodelError` naming the file and
what is wrong, never a bare traceback.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PerfmodelError
from ..hardware import DEFAULT_GPU
from ..jsonfile import read_json_object

#: widths swept when none are given: 64, 128, ..., 8192
DEFAULT_WIDTHS = tuple(64 * 2**i for i in range(8))


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report reads.  A file left ``None`` leaves its section out (the steps law and its
    runs fall back to the ones shipped for the model, if any)."""

    model: str
    hardware: tuple[str, ...] = (DEFAULT_GPU,)
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    breakdown_widths: tuple[int, ...] | None = None
    knobs: dict = field(default_factory=dict)
    dtype: str = "fp32"
    optimizer: str = "sgd"
    steps_law: str | None = None
    runs: str | None = None
    dataset_size: float | None = None
    devices: int | None = None
    profile: str | None = None
    validation: str | None = None
    kernels: str | None = None
    diagnostics: str | None = None
    command: str | None = None

    def files(self) -> dict[str, str]:
        """The input files given, by option name."""
        names = ("steps_law", "runs", "profile", "validation", "kernels", "diagnostics")
        return {n.replace("_", "-"): str(getattr(self, n)) for n in names if getattr(self, n)}


def read_json(path, what: str) -> dict:
    return read_json_object(path, what)


def _number(v):
    """CSV text -> int, float or the text itself ('' -> None)."""
    if v is None or v.strip() == "":
        return None
    t = v.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            return t


def read_csv_rows(path, what: str, required=()) -> list[dict]:
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [{k: _number(v) for k, v in r.items()} for r in reader]
            columns = reader.fieldnames or []
    except OSError as e:
        raise PerfmodelError(f"cannot read {what} file {str(p)!r}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise PerfmodelError(f"{what} file {str(p)!r} is not UTF-8 text (byte {e.start}); "
                             "write it as UTF-8 CSV") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise PerfmodelError(f"{p}: {what} CSV lacks column(s) {', '.join(missing)}; "
                             f"columns found: {', '.join(columns) or 'none'}")
    return rows


def rows_of(doc: dict, path, what: str, required=()) -> list[dict]:
    """``doc["rows"]`` checked to be a list of objects holding ``required`` keys."""
    rows = doc.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise PerfmodelError(f"{path}: {what} file needs a 'rows' list of objects")
    for i, r in enumerate(rows):
        missing = [k for k in required if k not in r]
        if missing:
            raise PerfmodelError(f"{path}: {what} row {i} lacks key(s) {', '.join(missing)}")
    return rows


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
