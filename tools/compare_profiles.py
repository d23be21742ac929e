"""Compare two calibrated CPU profiles point by point: the median ratio of their GEMM, memory and
per-op overhead times (second / first).

    python tools/compare_profiles.py A.json B.json

Used to compare two calibration paths run in alternation, or one path run twice (the machine's own
drift); docs/accuracy.md, "Noise guard".
"""
from __future__ import annotations

import argparse
import json
import statistics


def _gemm_key(p):
    return (p.get("dtype", "fp32"), p.get("batch", 1), p["m"], p["n"], p["k"], bool(p.get("trans_a")),
            bool(p.get("trans_b")), bool(p.get("hot")))


def compare(a: dict, b: dict) -> dict:
    ga = {_gemm_key(p): p for p in a.get("gemm", [])}
    gb = {_gemm_key(p): p for p in b.get("gemm", [])}
    common = [k for k in ga if k in gb]
    ratio = [gb[k]["time_s"] / ga[k]["time_s"] for k in common]
    big = [gb[k]["time_s"] / ga[k]["time_s"] for k in common if 2 * k[2] * k[3] * k[4] >= 1e8]
    ma = {(p["op"], p["bytes"]): p["time_s"] for p in a.get("memory", [])}
    mb = {(p["op"], p["bytes"]): p["time_s"] for p in b.get("memory", [])}
    mem = [mb[k] / ma[k] for k in ma if k in mb]
    oa, ob = a.get("overhead_us", {}), b.get("overhead_us", {})
    return {"gemm_points": len(ratio), "gemm_median_ratio": statistics.median(ratio) if ratio else None,
            "gemm_1e8_flop_median_ratio": statistics.median(big) if big else None,
            "memory_points": len(mem), "memory_median_ratio": statistics.median(mem) if mem else None,
            "overhead_ratio": {k: ob[k] / oa[k] for k in oa
                               if isinstance(oa[k], (int, float)) and isinstance(ob.get(k), (int, float)) and oa[k]}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    args = ap.parse_args(argv)
    a, b = (json.load(open(p))["calibration"] for p in (args.first, args.second))
    print(json.dumps(compare(a, b), indent=2))


if __name__ == "__main__":
    main()
