"""Speed benchmark of the prediction core (a command that prints figures, not a test).

    python -m perfmodel.bench [--configs 10000] [--repeats 5]

Prints sweep throughput (configurations per second after start-up, median of
repeats) per architecture and the wall times of ``perfmodel predict`` and of
``perfmodel plan --search-options`` (a 48-layer transformer on 512 devices) as
fresh processes (median of repeats).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np


def sweep_rate(model: str, n: int, repeats: int) -> float:
    from .grid import sweep
    from .hardware import load

    hw = [load("H100-SXM5"), load("V100-SXM2")]
    batches = [16, 32, 64, 128]
    step = 64 if model == "transformer" else 1  # transformer widths are multiples of the head size
    widths = step * np.arange(1, n // (len(hw) * len(batches)) + 1, dtype=np.int64) + 15 * (step == 1)
    sweep(model, widths[:10], hw, batches)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        cols = sweep(model, widths, hw, batches)
        times.append(time.perf_counter() - t)
    return len(cols["width"]) / statistics.median(times), len(cols["width"])


def wall(cmd: list[str], repeats: int) -> float:
    """Median wall time of ``cmd`` run as a fresh process ``repeats`` times."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def predict_wall(repeats: int) -> float:
    return wall([sys.executable, "-m", "perfmodel", "predict", "--model", "charlm", "--width", "4096"], repeats)


#: ``perfmodel plan --search-options`` on a 48-layer transformer, 2 widths, 512 devices, 4 global batches
PLAN_OPTIONS_ARGS = ["plan", "--model", "transformer", "--set", "layers=48", "--widths", "4096,8192",
                     "--devices", "512", "--dataset-size", "1e9", "--dtype", "bf16", "--optimizer", "adam",
                     "--batches", "256,512,1024,2048", "--search-options"]


def plan_options_wall(repeats: int) -> float:
    from .total import shipped_law_path
    law = str(shipped_law_path("charlm"))   # the transformer ships no law: any law gives the same search
    return wall([sys.executable, "-m", "perfmodel", *PLAN_OPTIONS_ARGS, "--steps-law", law], repeats)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    from .architectures import MODELS
    for model in MODELS:
        rate, n = sweep_rate(model, a.configs, a.repeats)
        print(f"sweep {model:12s} {n:6d} configurations: {rate:12,.0f} configurations/s")
    print(f"perfmodel predict --model charlm --width 4096: {predict_wall(a.repeats):.3f} s wall (median of "
          f"{a.repeats} fresh processes)")
    print(f"perfmodel {' '.join(PLAN_OPTIONS_ARGS)}: {plan_options_wall(a.repeats):.3f} s wall (median of "
          f"{a.repeats} fresh processes)")


if __name__ == "__main__":
    main()
