"""``tools/gpu_check.py`` (``make gpu-check``): the no-CUDA line, the steps it runs, the report it writes.

The steps' subprocesses are replaced by a fake runner that answers as the real commands would
(a profile file from calibrate, validate's JSON, pytest's summary line); the device facts come from
the fake CUDA backend.
"""
import importlib.util
import json
import sys
from pathlib import Path

from perfmodel.calibrate import backend

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

MAPES = {"mlp": 0.10, "wordlm": 0.20, "transformer": 0.30}


class FakeRunner:
    """Answers calibrate, validate and pytest as they would on a GPU; ``fail`` names a step that times out."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __call__(self, cmd, timeout_s):
        self.calls.append((cmd, timeout_s))
        step = "pytest" if "pytest" in cmd else cmd[3]
        if step == self.fail:
            return {"command": " ".join(cmd), "rc": None, "timed_out": True, "wall_s": timeout_s, "stdout": "",
                    "stderr": "killed"}
        out = ""
        if step == "calibrate":
            prov = {"wall_time_s": 42.0, "plan": "quick", "dtypes": ["fp32", "tf32"], "driver": "550.54",
                    "unstable_points": {"count": 0, "names": []}}
            Path(cmd[cmd.index("-o") + 1]).write_text(json.dumps({"calibration": {"provenance": prov}}))
        elif step == "validate":
            model = cmd[cmd.index("--model") + 1]
            out = json.dumps({"mape": MAPES[model], "rows": [{"width": 256, "predicted_s": 1.1e-3,
                                                              "measured_s": 1e-3, "error": 0.1, "note": ""}]})
        else:
            out = "..\n1 passed, 300 deselected in 3.20s\n"
        return {"command": " ".join(cmd), "rc": 0, "timed_out": False, "wall_s": 1.0, "stdout": out, "stderr": ""}


def test_without_cuda_one_line_and_exit_0(monkeypatch, capsys, tmp_path):
    import torch
    monkeypatch.delenv(backend.ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runner = FakeRunner()
    assert gpu_check.main(["--out", str(tmp_path / "c.json")], run=runner) == 0
    assert capsys.readouterr().out == gpu_check.NO_CUDA + "\n"
    assert runner.calls == [] and not (tmp_path / "c.json").exists()


def test_report_on_the_fake_gpu(monkeypatch, capsys, tmp_path):
    import torch
    monkeypatch.setenv(backend.ENV, "fake")
    out, profile = tmp_path / "reports" / "gpu-check.json", tmp_path / "reports" / "gpu-profile.json"
    runner = FakeRunner()
    assert gpu_check.main(["--out", str(out), "--profile", str(profile)], run=runner) == 0
    r = json.loads(out.read_text())
    assert r["ok"] is True
    assert (r["device"], r["torch"], r["cuda"], r["driver"]) == (backend.FakeCuda.NAME, torch.__version__, "fake",
                                                                 "550.54")
    assert r["calibration"]["calibration_wall_s"] == 42.0 and r["calibration"]["unstable_points"] == 0
    assert {m: v["mape"] for m, v in r["validate"].items()} == MAPES
    assert r["validate"]["mlp"]["rows"][0] == {"width": 256, "predicted_s": 1.1e-3, "measured_s": 1e-3, "error": 0.1}
    assert r["pytest_cuda"]["summary"] == "1 passed, 300 deselected in 3.20s"
    # the commands: calibrate --gpu --quick to the profile, validate each model on cuda with it, pytest -m cuda
    cmds = [c for c, _ in runner.calls]
    assert cmds[0][:3] == [sys.executable, "-m", "perfmodel"] and cmds[0][3:6] == ["calibrate", "--gpu", "--quick"]
    assert cmds[0][-1] == str(profile)
    for cmd, model in zip(cmds[1:4], gpu_check.VALIDATIONS, strict=True):
        assert cmd[3:6] == ["validate", "--model", model] and cmd[-4:] == ["cuda", "--hardware", str(profile),
                                                                           "--json"]
    assert cmds[4][1:5] == ["-m", "pytest", "-m", "cuda"]
    # every step bounded: its own cap, within the budget
    caps = [gpu_check.CALIBRATE_TIMEOUT_S] + [gpu_check.VALIDATE_TIMEOUT_S] * 3 + [gpu_check.PYTEST_TIMEOUT_S]
    assert all(t <= cap for (_, t), cap in zip(runner.calls, caps, strict=True))
    assert sum(caps) > gpu_check.BUDGET_S and gpu_check.BUDGET_S < 8 * 60
    line = capsys.readouterr().out
    assert line.startswith(f"gpu-check on {backend.FakeCuda.NAME}: calibration 42.0 s, MAPE mlp 10.0%")


def test_a_timed_out_calibration_fails_the_check(monkeypatch, tmp_path):
    monkeypatch.setenv(backend.ENV, "fake")
    out = tmp_path / "c.json"
    runner = FakeRunner(fail="calibrate")
    assert gpu_check.main(["--out", str(out), "--profile", str(tmp_path / "p.json")], run=runner) == 1
    r = json.loads(out.read_text())
    assert r["ok"] is False and r["calibration"]["timed_out"] is True and r["calibration"]["rc"] is None
    assert all(v["skipped"] == "no profile" for v in r["validate"].values())
    assert r["pytest_cuda"]["rc"] == 0        # the CUDA tests still run


def test_the_budget_shrinks_the_timeouts(monkeypatch, tmp_path):
    monkeypatch.setenv(backend.ENV, "fake")
    runner = FakeRunner()
    gpu_check.main(["--out", str(tmp_path / "c.json"), "--profile", str(tmp_path / "p.json"), "--budget-s", "60"],
                   run=runner)
    assert all(t <= 60 for _, t in runner.calls)


def test_run_step_records_rc_output_and_timeouts():
    ok = gpu_check.run_step([sys.executable, "-c", "print('hi')"], 30)
    assert ok["rc"] == 0 and ok["stdout"] == "hi\n" and ok["timed_out"] is False
    slow = gpu_check.run_step([sys.executable, "-c", "import time; time.sleep(30)"], 1)
    assert slow["rc"] is None and slow["timed_out"] is True and slow["wall_s"] < 10

