"""Published kernel timings (DeepBench layout) -> a calibrated profile.

``perfmodel calibrate --from-csv gemm.csv [rnn.csv conv.csv] --base V100-SXM2 -o v100.json``
keeps the base profile's datasheet figures and adds the matching GPU's rows
as raw calibration points (the format of ``perfmodel.hardware.calibration``).
"""
from __future__ import annotations

import datetime as _dt
import sys

from perfmodel.errors import PerfmodelError
from perfmodel.hardware import HardwareProfile
from perfmodel.hardware.profile import calibration_base_dict
from perfmodel.kernel_check import CELL_NAMES, gemm_dims, implausible_reason, matches_gpu, read_kernel_csv


def _gemm_point(r):
    """One GEMM row as a calibration point in the IR's row-major convention
    (:func:`perfmodel.kernel_check.gemm_dims`)."""
    return {"dtype": r["precision"].lower(), **gemm_dims(r), "batch": 1, "time_s": r["time_ms"] * 1e-3}


def _rnn_point(r):
    bwd = None if r["bwd_in_ms"] is None or r["bwd_w_ms"] is None else (r["bwd_in_ms"] + r["bwd_w_ms"]) * 1e-3
    return {"dtype": r["precision"].lower(), "cell": CELL_NAMES[r["cell"].lower()], "hidden": int(r["hidden"]),
            "batch": int(r["batch"]), "steps": int(r["timesteps"]), "input": int(r["hidden"]),
            "input_mode": "skip",  # DeepBench's rnn_bench runs cuDNN with CUDNN_SKIP_INPUT
            "fwd_s": r["fwd_ms"] * 1e-3, **({} if bwd is None else {"bwd_s": bwd})}


def _conv_point(r):
    p = {"dtype": r["precision"].lower(), "n": int(r["N"]), "c": int(r["C"]), "h": int(r["H"]), "w": int(r["W"]),
         "k": int(r["K"]), "r": int(r["R"]), "s": int(r["S"]), "stride_h": int(r["stride_h"]),
         "stride_w": int(r["stride_w"]), "pad_h": int(r["pad_h"]), "pad_w": int(r["pad_w"]),
         "fwd_s": r["fwd_ms"] * 1e-3}
    for col, key in (("bwd_in_ms", "bwd_data_s"), ("bwd_w_ms", "bwd_weight_s")):
        if r[col] is not None and not _suspect(r):
            p[key] = r[col] * 1e-3
    return p


POINTS = {"gemm": _gemm_point, "rnn": _rnn_point, "conv": _conv_point}


def calibration_from_csv(files, base: HardwareProfile, gpu: str | None = None) -> dict:
    """The ``calibration`` section made of the rows of ``files`` that belong to ``base``'s GPU."""
    cal: dict = {}
    seen = set()
    for f in files:
        table = read_kernel_csv(f)
        for r in table.rows:
            seen.add(r["gpu"])
            if (gpu is None and matches_gpu(r["gpu"], base)) or (gpu is not None and r["gpu"].lower() == gpu.lower()):
                point = POINTS[table.kind](r)
                if table.kind == "rnn" and "bwd_s" in point and any(
                        implausible_reason("rnn", r, ph, base) for ph in ("bwd_data", "bwd_weight")):
                    del point["bwd_s"]  # a backward time faster than the device's peak allows
                if table.kind == "gemm" and implausible_reason("gemm", r, "fwd", base):
                    continue
                cal.setdefault(table.kind, []).append(point)
    if not cal:
        raise PerfmodelError(f"no rows for GPU {gpu or base.name!r} in {', '.join(map(str, files))}; "
                             f"GPUs found: {', '.join(sorted(seen)) or 'none'} (use --gpu-name NAME or another --base)")
    cal["provenance"] = {"source": "csv", "files": [str(f) for f in files], "device": gpu or base.name,
                         "kind": base.kind, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                         "command": " ".join(sys.argv), "rows": {k: len(v) for k, v in cal.items()}}
    return cal


def _suspect(row) -> bool:
    from perfmodel.kernel_check import suspect_reason
    return suspect_reason("conv", row, "bwd_weight") is not None


def profile_from_csv(files, base: HardwareProfile, gpu: str | None = None, name: str | None = None) -> dict:
    """A full profile dict: ``base`` with its name changed and the CSV rows as calibration."""
    d = calibration_base_dict(base)
    d["name"] = name or f"{base.name}-calibrated"
    d["description"] = f"{base.description}; calibrated from {', '.join(map(str, files))}"
    d["calibration"] = calibration_from_csv(files, base, gpu)
    return d
