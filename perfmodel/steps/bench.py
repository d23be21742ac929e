"""Speed of the step-law commands (a command that prints figures, not a test).

    python -m perfmodel.steps.bench [--repeats 3]

Prints the wall time, as fresh processes (median of repeats), of ``perfmodel steps fit`` on
50 runs of a planted law with the default 200-draw bootstrap and coverage check, of
``perfmodel steps predict`` on the law it wrote, and of ``perfmodel plan`` with intervals
over 20 widths on 1,024 devices.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..bench import wall


def planted_runs(path: Path, n: int = 50) -> Path:
    """``n`` runs of S = 3·D·M^−0.6 + 150 with 5 % lognormal noise over 5 widths × 5 sizes × 2 seeds."""
    rng = np.random.default_rng(0)
    cols = ["model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min", "steps_to_converge",
            "min_val_loss", "epochs", "wall_s", "capped", "tokens_per_example"]
    rows = []
    for w in (16, 32, 64, 128, 256):
        for D in (5e4, 1e5, 2e5, 4e5, 8e5):
            for s in (0, 1):
                M = 3 * w * w + 100 * w
                S = (3.0 * D * M ** -0.6 + 150) * np.exp(0.05 * rng.standard_normal())
                rows.append(["charlm", w, M, D, 32, s, S, S, 1.0, 1.0, 1.0, False, 32])
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([cols] + rows[:n])
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    pm = [sys.executable, "-m", "perfmodel"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = planted_runs(Path(tmp) / "runs.csv")
        law = str(Path(tmp) / "law.json")
        t_fit = wall(pm + ["steps", "fit", str(runs), "-o", law], a.repeats)
        print(f"perfmodel steps fit (50 runs, 200 bootstrap draws, coverage check): {t_fit:.2f} s wall")
        t_pred = wall(pm + ["steps", "predict", law, "--params", "1e7", "--dataset-size", "1e7"], a.repeats)
        print(f"perfmodel steps predict: {t_pred:.3f} s wall")
        t_plan = wall(pm + ["plan", "--model", "charlm", "--widths", ",".join(str(256 * i) for i in range(1, 21)),
                            "--dataset-size", "1e8", "--devices", "1024", "--steps-law", law], a.repeats)
        print(f"perfmodel plan (20 widths, 1,024 devices, with intervals): {t_plan:.2f} s wall")
    print(f"(medians of {a.repeats} fresh processes)")


if __name__ == "__main__":
    main()
