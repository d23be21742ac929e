"""Time the GEMMs of validated training steps standalone and compare each with its price.

    python tools/step_gemms.py PROFILE.json SAMPLE.json [--rounds 3] [--rows 8]

SAMPLE.json is the output of ``perfmodel validate --sample N --json``.  For each of its ``--rows``
worst rows the script builds the step's op graph, and for every GEMM op times the same shape and
layout with the calibration's own callable (``perfmodel.calibrate.gemm.gemm_callable``: first input
hot, second input and output cold; one thread, CPU clock, interleaved rounds, median) and prices it
as a standalone call (``perfmodel.cost.op_time.standalone_s``).  A ratio near 1 says
the profile prices the shape as it runs standalone, so the row's error comes from the step around it
(operands warmer or colder than calibrated, allocation); a ratio far from 1 says the interpolation or
the off-grid factor is off at that shape.  Nothing is written.
"""
from __future__ import annotations

import argparse
import json
import statistics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("sample")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=8)
    args = ap.parse_args(argv)
    import torch
    from perfmodel.calibrate import gemm
    from perfmodel.calibrate.timing import measure

    from perfmodel import hardware
    from perfmodel.architectures import build_graph
    from perfmodel.cost.alignment import alignment_class
    from perfmodel.cost.op_time import standalone_s
    from perfmodel.cost.roofline import gemm_layout
    from perfmodel.ops import OpKind
    torch.set_num_threads(1)
    hw = hardware.load(args.profile)
    sample = json.load(open(args.sample, encoding="utf-8"))
    rows = sorted(sample["rows"], key=lambda r: -abs(r["error"]))[:args.rows]
    ratios = []
    for r in rows:
        graph = build_graph(sample["model"], r["width"], **r["knobs"])
        ops = [op for op in graph.step_ops() if op.kind == OpKind.GEMM and op.dims.get("batch", 1) == 1]
        shapes = [gemm_layout(op) for op in ops]
        fns = [gemm.gemm_callable(1, m, n, k, ta, tb, "fp32", "cpu") for m, n, k, ta, tb in shapes]
        times = [[] for _ in fns]
        for _ in range(args.rounds):
            for i, fn in enumerate(fns):
                times[i].append(measure(fn, warmup=1, repeats=3, min_block_s=5e-3, clock="cpu").seconds)
        print(f"{sample['model']} width {r['width']} {r['knobs']}: step error {r['error']:+.2f}")
        for op, (m, n, k, ta, tb), ts in zip(ops, shapes, times, strict=True):
            priced = standalone_s(op, hw)
            now = statistics.median(ts)
            ratios.append(now / priced)
            lay = gemm.layout_name(ta, tb)
            print(f"   {op.path:24s} {op.phase:10s} {lay} {m}x{n}x{k} (class {int(alignment_class(m, n, k))}): "
                  f"standalone {now * 1e6:8.1f} us, priced {priced * 1e6:8.1f} us, ratio {now / priced:.2f}")
    if ratios:
        print(f"median standalone / priced over {len(ratios)} GEMMs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
