"""Fit the profiles' ``in_step_fraction`` on one part of the published runs and test it on the rest.

    python tools/fit_in_step.py [--train PREFIX ...] [--write]

The datasheet GPU profiles price GEMMs and attention at isolated-kernel figures (``efficiency``:
the best shape of a matmul search, FlashAttention-2's benchmark), and every published run of
``perfmodel check published`` is predicted faster than it ran.  ``in_step_fraction`` f divides those
kernels' compute time inside a step (:func:`perfmodel.cost.op_time.op_time`).  One f, shared by the
profiles of :data:`PROFILES`, is fitted on the training rows (ids starting with a ``--train`` prefix;
default: Narayanan et al. 2021 Table 1 and Korthikanti et al. 2022, the rows the model was adjusted
against before) so that their mean log speed error is zero::

    speed error of a row  e = log(predicted speed / measured speed)      (speed: 1 / iteration time,
                                                                           tokens/s, TFLOP/s or MFU)
    f  <-  f * exp(-mean of e over the training rows)                     repeated until |mean| < 1e-3

(time in a compute-bound step scales as 1 / f, so each step is a Newton step on log f).  It prints f,
then per source the MAPE and median signed speed error of the training rows and of the held-out rows
with f and without it.  ``--write`` stores f, rounded to 3 digits, with its source line in each
profile of :data:`PROFILES` (``profiles/*.json``).  Every row is predicted anew for each trial f
(about a minute per full pass of ``check published``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

#: profiles whose GEMM efficiency is the maximum of a matmul search (S. Bekman's MAMF table)
PROFILES = ("A100-SXM4-40GB", "A100-SXM4-80GB", "H100-SXM5", "H200", "B200")
TRAIN = ("narayanan21-t1-", "korthikanti22-")
ROOT = Path(__file__).resolve().parent.parent


def speed_error(result) -> float:
    """log(predicted speed / measured speed) of one predicted row (module doc)."""
    r = result.run
    ratio = r.measured / result.predicted if r.measured_unit == "iteration_s" else result.predicted / r.measured
    return math.log(ratio)


def predict_all(runs, f):
    """Every run predicted with ``in_step_fraction = f`` on the profiles of PROFILES (None: without)."""
    from perfmodel import hardware
    from perfmodel.published.check import predict_run
    cache = {}
    out = []
    for run in runs:
        if run.hardware not in cache:
            hw = hardware.load(run.hardware)
            cache[run.hardware] = dataclasses.replace(hw, in_step_fraction=f) if run.hardware in PROFILES else hw
        out.append(predict_run(run, cache[run.hardware]))
    return out


def fit(runs, f0=1.0, tol=1e-3, max_iter=8):
    f = f0
    for _ in range(max_iter):
        errs = [speed_error(x) for x in predict_all(runs, f)]
        mean = sum(errs) / len(errs)
        if abs(mean) < tol:
            break
        f = min(1.0, f * math.exp(-mean))
    return f


def summary(results, label):
    import numpy as np
    by = {}
    for x in results:
        by.setdefault(x.run.source, []).append(x)
    lines = []
    for src, xs in sorted(by.items()):
        mape = 100 * np.mean([abs(x.error) for x in xs])
        med = 100 * (math.exp(np.median([speed_error(x) for x in xs])) - 1)
        lines.append(f"  {label:9s} {src:24s} {len(xs):3d} rows  MAPE {mape:5.1f}%  median speed error {med:+6.1f}%")
    mape = 100 * np.mean([abs(x.error) for x in results])
    lines.append(f"  {label:9s} {'all':24s} {len(results):3d} rows  MAPE {mape:5.1f}%")
    return lines


def write(f: float, train_ids: list[str], text: str) -> None:
    for name in PROFILES:
        path = ROOT / "profiles" / f"{name}.json"
        d = json.loads(path.read_text(encoding="utf-8"))
        d["in_step_fraction"] = round(f, 3)
        d["sources"]["in_step_fraction"] = text
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="+", default=list(TRAIN), help="id prefixes of the training rows")
    ap.add_argument("--write", action="store_true", help="store the fitted f in the profiles of PROFILES")
    args = ap.parse_args(argv)
    from perfmodel import hardware
    from perfmodel.published.runs import load_rows, setup
    names = set(hardware.available())
    runs = [r for r in (setup(row, names) for row in load_rows()) if not r.reason]
    train = [r for r in runs if r.id.startswith(tuple(args.train))]
    held = [r for r in runs if not r.id.startswith(tuple(args.train))]
    f = fit(train)
    print(f"in_step_fraction fitted on {len(train)} training rows ({', '.join(args.train)}): {f:.3f}")
    for label, rows in (("training", train), ("held-out", held)):
        for tag, value in (("f=1", None), (f"f={f:.3f}", f)):
            print("\n".join(summary(predict_all(rows, value), f"{label[:5]} {tag}")))
    if args.write:
        text = (f"fitted by `python tools/fit_in_step.py --write` on the {len(train)} published runs whose ids start "
                f"with {', '.join(args.train)} (perfmodel/published/runs.csv; A100 80GB, Megatron-LM): the one "
                "fraction of the isolated GEMM and attention rates (efficiency above) that makes their mean log "
                "speed error zero; held-out rows and figures: docs/accuracy.md, 'In-step tensor-core fraction'")
        write(f, train, text)
        print(f"wrote in_step_fraction = {round(f, 3)} to {', '.join(PROFILES)}")


if __name__ == "__main__":
    main()
