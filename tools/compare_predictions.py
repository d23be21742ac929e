"""Print, or compare against a saved copy, the predictions of every model on three profiles.

    python tools/compare_predictions.py -o reports/predictions_before.json
    python tools/compare_predictions.py --against reports/predictions_before.json

What it records: ``perfmodel predict --json`` for every model x 3 widths x 3 profiles (the
H100-SXM5 datasheet, cpu-generic, and a V100 calibrated from the DeepBench sample rows in
tests/data) and ``perfmodel plan --json`` for charlm and transformer.  ``--against`` compares
every number with a relative tolerance of 1e-9 and every string exactly, lists what differs and
exits 1 when anything does.  It is a refactoring check: behaviour unchanged means no difference.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

from perfmodel.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
WIDTHS = {"charlm": (256, 1024, 4096), "wordlm": (256, 1024, 4096), "speech": (256, 800, 1600),
          "mlp": (256, 1024, 8192), "transformer": (256, 768, 2048), "resnet": (32, 64, 128)}
PLANS = (["--model", "charlm", "--widths", "256..4096", "--dataset-size", "1e8", "--devices", "8"],
         ["--model", "transformer", "--widths", "512,1024,2048", "--dataset-size", "1e9", "--devices", "16",
          "--steps-law", str(ROOT / "perfmodel/steps/default_laws/charlm.json")])


def _run(args: list[str], parse: bool = True):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    if res.exit_code != 0 or not parse:
        return {"exit_code": res.exit_code, "output": res.output.strip().splitlines()[-1:]}
    return json.loads(res.stdout)  # warnings go to stderr


def collect() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        v100 = str(Path(tmp) / "V100-deepbench.json")
        _run(["calibrate", "--from-csv", str(DATA / "deepbench_gemm_v100_sample.csv"),
              str(DATA / "deepbench_rnn_v100_sample.csv"), str(DATA / "deepbench_conv_v100_sample.csv"),
              "--base", "V100-SXM2", "-o", v100, "--no-progress"], parse=False)
        if not Path(v100).is_file():
            raise SystemExit("could not build the DeepBench-calibrated V100 profile")
        for hw_name, hw in (("H100-SXM5", "H100-SXM5"), ("cpu-generic", "cpu-generic"), ("V100-deepbench", v100)):
            for model, widths in WIDTHS.items():
                for w in widths:
                    out[f"predict {model} {w} {hw_name}"] = _run(
                        ["predict", "--model", model, "--width", str(w), "--hardware", hw, "--json"])
            out[f"predict charlm 1024 {hw_name} dp4 tp2"] = _run(
                ["predict", "--model", "charlm", "--width", "1024", "--hardware", hw, "--dp", "4", "--tp", "2",
                 "--json"])
    for args in PLANS:
        out["plan " + " ".join(args[:2] + args[2:4])] = _run(["plan", *args, "--json"])
    return out


def diff(a, b, path="", tol=1e-9) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in (diff(a[k], b[k], f"{path}/{k}", tol) if k in a and k in b
                                          else [f"{path}/{k}: only in {'before' if k in a else 'after'}"])]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} -> {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in diff(x, y, f"{path}[{i}]", tol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol * max(abs(a), abs(b))):
            return []
        return [f"{path}: {a!r} -> {b!r}"]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="write the predictions here")
    ap.add_argument("--against", help="compare with a file written by -o")
    args = ap.parse_args(argv)
    got = collect()
    if args.output:
        Path(args.output).write_text(json.dumps(got, indent=1, sort_keys=True))
        print(f"{len(got)} predictions written to {args.output}")
    if args.against:
        before = json.loads(Path(args.against).read_text())
        d = diff(before, got)
        for line in d[:50]:
            print(line)
        print(f"{len(got)} predictions compared with {args.against}: "
              f"{'identical within 1e-9 relative' if not d else f'{len(d)} differences'}")
        return 1 if d else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
