"""MAPE of `perfmodel validate --json` outputs had each op's predicted time been scaled by the
machine's drift for its bound (compute: gemm, memory: copy_dram, overhead: dispatch; the geometric
mean of the drift measured before and after the run).

    python tools/drift_adjusted_mape.py PROFILE.json VALIDATE1.json [VALIDATE2.json ...]

An attribution of the error, not a prediction: how much of it the profile's stored speeds, against
the same points re-timed during the run, explain (docs/accuracy.md, "Noise guard").
"""
from __future__ import annotations

import argparse
import json
import math

BOUND_GROUP = {"compute": "gemm", "memory": "copy_dram", "overhead": "dispatch"}


def adjusted(validation: dict, hw) -> tuple[float, float]:
    """(raw MAPE, drift-adjusted MAPE) of one validation output, as fractions."""
    from perfmodel.predict import predict
    drift = validation["drift"]
    ratio = {g: math.sqrt(drift["before"][g] * drift["after"][g]) for g in BOUND_GROUP.values()}
    raw, adj = [], []
    for row in validation["rows"]:
        if row["measured_s"] is None:
            continue
        p = predict(validation["model"], row["width"], hw, **{**validation.get("knobs", {}), **row.get("knobs", {})})
        t = sum(b.time_s * ratio[BOUND_GROUP[b.bound]] if b.bound in BOUND_GROUP else b.time_s for b in p.breakdown)
        raw.append(abs(row["error"]))
        adj.append(abs(t / row["measured_s"] - 1))
    return sum(raw) / len(raw), sum(adj) / len(adj)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("validations", nargs="+")
    args = ap.parse_args(argv)
    from perfmodel import hardware
    hw = hardware.load(args.profile)
    for path in args.validations:
        v = json.load(open(path))
        raw, adj = adjusted(v, hw)
        print(f"{v['model']:12s} MAPE {100 * raw:5.1f}%   drift-adjusted {100 * adj:5.1f}%   ({path})")


if __name__ == "__main__":
    main()
