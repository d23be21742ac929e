"""Time random GEMM shapes on and off the power-of-two grid now, and print time now / predicted for each
on a calibrated CPU profile: does the profile price shapes off its grid as well as shapes on it?

    python tools/offgrid_gemm.py PROFILE.json [--seed S] [--cases 24] [--rounds 5]

Each case draws three log-uniform dimensions in [16, 2048]; its on-grid shape rounds each to a power of
two, its off-grid shape to an integer (>= 5); layouts x @ W^T, dY @ W, dY^T @ X in turn.  The two are
timed in interleaved rounds (one thread, CPU clock, the calibration's own GEMM callable:
``perfmodel.calibrate.gemm.gemm_callable``), and the median over rounds is divided by the profile's
price of the same shape.  The script behind the "off the grid" figures of docs/accuracy.md.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics

LAYOUTS = ((False, True), (False, False), (True, False))


def draw(rng: random.Random, n: int) -> list:
    cases = []
    while len(cases) < n:
        e = [rng.uniform(4, 11) for _ in range(3)]
        on = tuple(2 ** round(x) for x in e)
        off = tuple(max(5, round(2 ** x)) for x in e)
        if 2 * math.prod(on) <= 3e9 and 1e6 <= 2 * math.prod(off) <= 3e9:
            cases.append((on, off, LAYOUTS[len(cases) % 3]))
    return cases


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import torch
    from perfmodel.calibrate import gemm
    from perfmodel.calibrate.timing import measure

    from perfmodel import hardware
    from perfmodel.cost.op_time import op_time
    from perfmodel.ops import Op, OpKind
    torch.set_num_threads(1)
    hw = hardware.load(args.profile)

    def price(shape, layout):
        op = Op(OpKind.GEMM, "gemm", dict(zip("mnk", shape, strict=True)), "fp32",
                attrs={"trans_a": layout[0], "trans_b": layout[1]})
        return float(op_time(op, hw).time_s)

    cases = draw(random.Random(args.seed), args.cases)
    fns = [[gemm.gemm_callable(1, *s, *lay, "fp32", "cpu") for s in (on, off)] for on, off, lay in cases]
    times = [[[], []] for _ in cases]
    for _ in range(args.rounds):
        for i, pair in enumerate(fns):
            for j, fn in enumerate(pair):
                times[i][j].append(measure(fn, warmup=1, repeats=3, min_block_s=5e-3, clock="cpu").seconds)
    ratios = [[], []]
    for (on, off, lay), ts in zip(cases, times, strict=True):
        r = [statistics.median(ts[j]) / price(s, lay) for j, s in enumerate((on, off))]
        for j in (0, 1):
            ratios[j].append(r[j])
        name = gemm.layout_name(*lay)
        print(f"{name} on {str(on):18s} now/priced {r[0]:.2f}   off {str(off):18s} now/priced {r[1]:.2f}")
    print(f"median time now / priced: on the grid {statistics.median(ratios[0]):.2f}, "
          f"off it {statistics.median(ratios[1]):.2f} ({len(cases)} cases, seed {args.seed})")


if __name__ == "__main__":
    main()
