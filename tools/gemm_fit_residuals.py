"""How well a calibrated profile prices its own GEMM points: stored time / priced time, per layout and K.

    python tools/gemm_fit_residuals.py PROFILE.json [--worst 12]

For every grid point of ``calibration.gemm`` (off-grid points excluded) the script prices the same
shape and layout as a standalone call (``perfmodel.cost.op_time.standalone_s``) and prints the
median and the 10th/90th percentiles of stored / priced per operand layout and K range, then the
worst points.
A ratio far from 1 at the profile's own points means the interpolation (``perfmodel.cost.interp``)
smooths away what was measured; nothing is re-timed.
"""
from __future__ import annotations

import argparse

import numpy as np

K_BUCKETS = ((1, 8), (9, 32), (33, 256), (257, 1 << 20))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--worst", type=int, default=12)
    args = ap.parse_args(argv)
    from perfmodel.calibrate.gemm import layout_name

    from perfmodel import hardware
    from perfmodel.cost.op_time import standalone_s
    from perfmodel.ops import Op, OpKind
    hw = hardware.load(args.profile)
    rows = []
    for p in hw.calibration.get("gemm", []):
        if p.get("offgrid") or p.get("hot") or p.get("batch", 1) > 1 or p.get("dtype", "fp32") != "fp32":
            continue
        ta, tb = bool(p.get("trans_a")), bool(p.get("trans_b"))
        op = Op(OpKind.GEMM, "gemm", {"m": p["m"], "n": p["n"], "k": p["k"]}, "fp32",
                attrs={"trans_a": ta, "trans_b": tb})
        rows.append((layout_name(ta, tb), p["m"], p["n"], p["k"], p["time_s"], standalone_s(op, hw)))
    print(f"{len(rows)} fp32 grid points; stored / priced (median, p10-p90)")
    for lay in ("NT", "NN", "TN"):
        for lo, hi in K_BUCKETS:
            r = np.array([t / q for ly, m, n, k, t, q in rows if ly == lay and lo <= k <= hi])
            if len(r):
                print(f"  {lay} K {lo:>4}-{hi:<7} n={len(r):4d}  {np.median(r):.2f}  "
                      f"({np.percentile(r, 10):.2f}-{np.percentile(r, 90):.2f})")
    rows.sort(key=lambda r: -abs(np.log(r[4] / r[5])))
    print("worst:")
    for lay, m, n, k, t, q in rows[:args.worst]:
        print(f"  {lay} m={m:<6} n={n:<6} k={k:<6} stored {t * 1e6:10.1f} us  priced {q * 1e6:10.1f} us  "
              f"ratio {t / q:.2f}")


if __name__ == "__main__":
    main()
