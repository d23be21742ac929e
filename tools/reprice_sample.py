"""Price the configurations of a ``validate --sample`` run again on another profile, against the same
measured step times: how much of a run's error a change of profile (or of the code) explains.

    python tools/reprice_sample.py PROFILE.json SAMPLE.json [SAMPLE.json ...]

For each SAMPLE.json (``perfmodel validate --sample N --json``) the script predicts every row's
configuration on PROFILE (``perfmodel.predict.predict``) and prints the MAPE and mean signed error
it had as recorded next to those of the new prediction; nothing is timed or written.  The script
behind the "re-priced" figures of docs/accuracy.md.
"""
from __future__ import annotations

import argparse
import json


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("samples", nargs="+")
    args = ap.parse_args(argv)
    from perfmodel import hardware
    from perfmodel.predict import predict
    hw = hardware.load(args.profile)
    for path in args.samples:
        sample = json.load(open(path, encoding="utf-8"))
        rows = [r for r in sample["rows"] if r.get("measured_s")]
        before = [r["error"] for r in rows]
        after = [predict(sample["model"], r["width"], hw, **r["knobs"]).time_per_step_s / r["measured_s"] - 1
                 for r in rows]
        mape = [100 * sum(abs(e) for e in errs) / len(errs) for errs in (before, after)]
        mean = [100 * sum(errs) / len(errs) for errs in (before, after)]
        print(f"{path}: {len(rows)} rows of {sample['model']}; MAPE {mape[0]:.1f}% -> {mape[1]:.1f}%, "
              f"mean signed {mean[0]:+.1f}% -> {mean[1]:+.1f}% on {hw.name}")


if __name__ == "__main__":
    main()
