"""Recording a validation in the profile it validated: ``calibration.provenance.validation``.

``perfmodel validate --record`` stores the MAPE it measured (a fraction), the model, the
number of configurations, the date and the command.  :mod:`perfmodel.total_interval` reads
the latest record as the time-per-step model's error on that profile; ``by_model`` keeps
the last record per model.  Only calibrated profile files can carry a record: a shipped
datasheet profile is not changed.
"""
from __future__ import annotations

import datetime
from pathlib import Path

from ..errors import PerfmodelError
from ..jsonfile import read_json_object, write_json_atomic


def check_recordable(hw) -> Path:
    """The profile file ``hw`` came from, if a validation may be recorded in it; else a one-line error."""
    if not hw.calibration or not hw.path or not Path(hw.path).is_file():
        raise PerfmodelError(f"--record needs a calibrated profile file (perfmodel calibrate); {hw.name} is a "
                             "datasheet profile shipped with perfmodel and is not changed")
    return Path(hw.path)


def record_validation(hw, mape: float, model: str, n: int, command: str) -> dict:
    """Write the record into ``hw``'s profile file atomically; returns the record."""
    path = check_recordable(hw)
    if mape is None or not mape >= 0:
        raise PerfmodelError(f"nothing to record: the validation measured no MAPE ({mape!r})")
    d = read_json_object(path, "profile")
    prov = d.setdefault("calibration", {}).setdefault("provenance", {})
    rec = {"mape": float(mape), "model": model, "configurations": int(n),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": command}
    old = prov.get("validation") or {}
    prov["validation"] = {**rec, "by_model": {**(old.get("by_model") or {}), model: rec}}
    write_json_atomic(path, d)
    return rec
