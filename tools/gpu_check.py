"""``make gpu-check``: calibrate this machine's GPU, validate three models on it, run the CUDA tests.

On a CUDA machine, in order, each step a subprocess bounded by its own timeout and by what is
left of ``BUDGET_S`` (so the whole check ends within 8 minutes on one GPU):

1. ``perfmodel calibrate --gpu --quick -o reports/gpu-profile.json``                 (at most 240 s)
2. ``perfmodel validate --device cuda --hardware reports/gpu-profile.json --json`` for each model of
   ``VALIDATIONS``: mlp, wordlm and a 2-layer transformer at widths a GPU times in seconds   (90 s each)
3. ``python -m pytest -m cuda -q``                                                     (120 s)

It writes ``reports/gpu-check.json``::

    ok                  every step exited 0
    device, torch, cuda, cudnn, driver     what ran (the driver from the profile's NVML reading)
    wall_s, budget_s
    calibration         {command, rc, timed_out, wall_s, profile, calibration_wall_s, plan, dtypes,
                         unstable_points, throttled}
    validate            {model: {command, rc, timed_out, wall_s, mape, rows: [{width, predicted_s,
                         measured_s, error}]}}
    pytest_cuda         {command, rc, timed_out, wall_s, summary}

and exits 1 when a step failed.  Without CUDA it prints one line saying so and exits 0.
The CUDA runtime is :func:`perfmodel.calibrate.backend.get` (``PERFMODEL_CUDA_BACKEND=fake`` in the tests).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_S = 470
CALIBRATE_TIMEOUT_S, VALIDATE_TIMEOUT_S, PYTEST_TIMEOUT_S = 240, 90, 120
#: model -> extra validate arguments (widths and knobs a GPU runs in seconds per width)
VALIDATIONS = {
    "mlp": ["--widths", "256..2048"],
    "wordlm": ["--widths", "256..1024", "--seq-len", "32", "--batch", "32"],
    "transformer": ["--widths", "256,512", "--seq-len", "128", "--batch", "8", "--set", "layers=2"],
}
NO_CUDA = "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"


def run_step(cmd: list[str], timeout_s: float) -> dict:
    """Run ``cmd`` in the repository root; ``{command, rc, timed_out, wall_s, stdout, stderr}``."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout_s, 1))
        rc, out, err, timed_out = p.returncode, p.stdout, p.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, timed_out = None, True
        out, err = (x.decode() if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr))
    return {"command": " ".join(cmd), "rc": rc, "timed_out": timed_out,
            "wall_s": round(time.perf_counter() - t0, 1), "stdout": out, "stderr": err}


def _result(step: dict, **figures) -> dict:
    """A step's record for the JSON: the run's facts, its figures, the tail of stderr when it failed."""
    out = {k: step[k] for k in ("command", "rc", "timed_out", "wall_s")}
    if step["rc"] != 0:
        out["stderr_tail"] = step["stderr"][-2000:]
    return {**out, **figures}


def _calibration_figures(profile: Path) -> dict:
    prov = json.loads(profile.read_text())["calibration"]["provenance"]
    return {"profile": str(profile.relative_to(ROOT) if profile.is_relative_to(ROOT) else profile),
            "calibration_wall_s": prov.get("wall_time_s"), "plan": prov.get("plan"), "dtypes": prov.get("dtypes"),
            "unstable_points": (prov.get("unstable_points") or {}).get("count"),
            "throttled": bool(prov.get("throttled")), "driver": prov.get("driver")}


def _validate_figures(stdout: str) -> dict:
    try:
        v = json.loads(stdout)
        return {"mape": v["mape"], "rows": [{k: r[k] for k in ("width", "predicted_s", "measured_s", "error")}
                                            for r in v["rows"]]}
    except (ValueError, KeyError, TypeError):
        return {"mape": None, "error": "validate printed no JSON report"}


def check(out: Path, profile: Path, budget_s: float = BUDGET_S, run=run_step) -> dict:
    """Every step of the module docstring; the report (also written to ``out``)."""
    import torch
    from perfmodel.calibrate import backend
    cuda = backend.get()
    t0 = time.perf_counter()

    def left(cap):
        return min(cap, budget_s - (time.perf_counter() - t0))
    perfmodel = [sys.executable, "-m", "perfmodel"]
    report = {"device": cuda.device_name(0), "torch": torch.__version__, **cuda.versions(), "budget_s": budget_s}
    profile.parent.mkdir(parents=True, exist_ok=True)
    step = run([*perfmodel, "calibrate", "--gpu", "--quick", "--no-progress", "-o", str(profile)],
               left(CALIBRATE_TIMEOUT_S))
    calibrated = step["rc"] == 0 and profile.is_file()
    figures = _calibration_figures(profile) if calibrated else {}
    report["driver"] = figures.pop("driver", None)
    report["calibration"] = _result(step, **figures)
    report["validate"] = {}
    for model, extra in VALIDATIONS.items():
        if not calibrated or left(VALIDATE_TIMEOUT_S) < 1:
            report["validate"][model] = {"rc": None, "skipped": "no profile" if not calibrated else "out of time"}
            continue
        step = run([*perfmodel, "validate", "--model", model, *extra, "--device", "cuda", "--hardware", str(profile),
                    "--json"], left(VALIDATE_TIMEOUT_S))
        report["validate"][model] = _result(step, **(_validate_figures(step["stdout"]) if step["rc"] == 0 else {}))
    step = run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"],
               max(left(PYTEST_TIMEOUT_S), 1))
    lines = [ln for ln in step["stdout"].splitlines() if ln.strip()]
    report["pytest_cuda"] = _result(step, summary=lines[-1] if lines else "")
    steps = [report["calibration"], *report["validate"].values(), report["pytest_cuda"]]
    report["ok"] = all(s.get("rc") == 0 for s in steps)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None, run=run_step) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "gpu-check.json")
    ap.add_argument("--profile", type=Path, default=ROOT / "reports" / "gpu-profile.json")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="wall-clock budget of all steps together")
    args = ap.parse_args(argv)
    from perfmodel.calibrate import backend
    if not backend.get().is_available():
        print(NO_CUDA)
        return 0
    report = check(args.out, args.profile, args.budget_s, run)
    mapes = ", ".join(f"{m} {100 * v['mape']:.1f}%" if v.get("mape") is not None else f"{m} -"
                      for m, v in report["validate"].items())
    print(f"gpu-check on {report['device']}: calibration {report['calibration'].get('calibration_wall_s')} s, "
          f"MAPE {mapes}, CUDA tests: {report['pytest_cuda']['summary'] or 'no summary'}; "
          f"{'ok' if report['ok'] else 'FAILED'}; wrote {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
