"""``perfmodel validate`` machinery: real steps of a tiny model, MAPE arithmetic, OOM, JSON, CLI errors."""
import json

import pytest
from click.testing import CliRunner

import perfmodel.validate as pv
from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.errors import PerfmodelError

TINY_MLP = {"batch": 4, "depth": 1, "input_dim": 8, "classes": 3}


@pytest.fixture
def cpu_hw():
    return hardware.load(hardware.DEFAULT_CPU)


def test_rows_and_mape_arithmetic(cpu_hw):
    v = pv.validate("mlp", [8, 16], cpu_hw, warmup=1, repeats=2, progress=False, **TINY_MLP)
    assert [r.width for r in v.rows] == [8, 16]
    for r in v.rows:
        assert r.measured_s > 0 and r.predicted_s > 0
        assert r.error == pytest.approx((r.predicted_s - r.measured_s) / r.measured_s)
    assert v.mape == pytest.approx(sum(abs(r.error) for r in v.rows) / 2)
    d = v.to_dict()
    assert set(d["rows"][0]) >= {"width", "predicted_s", "measured_s", "error"}
    assert d["mape"] == v.mape


def test_cpu_steps_report_the_bytes_they_fault_in(cpu_hw, monkeypatch):
    # a fake fault counter that advances 5 pages per read: each timed step reads it twice -> 5 pages per step
    calls = iter(range(0, 10**6, 5))
    monkeypatch.setattr(pv, "_minor_faults", lambda: next(calls))
    t = pv.time_training_step("mlp", 8, "cpu", warmup=1, repeats=3, **TINY_MLP)
    assert t.fresh_bytes == 5 * pv._page_bytes()
    v = pv.validate("mlp", [8], cpu_hw, warmup=1, repeats=2, progress=False, **TINY_MLP)
    assert v.rows[0].fresh_bytes == 5 * pv._page_bytes()
    assert v.to_dict()["rows"][0]["fresh_bytes_per_step"] == 5 * pv._page_bytes()
    # next to it, what the model priced as fresh (no allocation calibration in cpu-generic: nothing)
    assert v.rows[0].predicted_fresh_bytes == 0.0


def test_error_with_the_measured_faults_priced():
    # predicted 30 ms, measured 40 ms (-25%); the step faulted in 20 MiB, the model priced 4 MiB.
    # The 16 MiB it left out, at 0.4 ns/B: 16 * 2**20 * 0.4e-9 = 6.71 ms -> (30 + 6.71 - 40) / 40 = -8.2%
    row = pv.ValidationRow(1024, 30e-3, 40e-3, fresh_bytes=20 * 2**20, predicted_fresh_bytes=4 * 2**20,
                           first_touch_s_per_byte=0.4e-9)
    assert row.unpriced_fault_s == pytest.approx(16 * 2**20 * 0.4e-9)
    assert row.error_with_measured_faults == pytest.approx((30e-3 + 16 * 2**20 * 0.4e-9 - 40e-3) / 40e-3)
    assert row.error == pytest.approx(-0.25)
    # a row without a fault count or a first-touch price has no such figure, and neither has the MAPE
    bare = pv.ValidationRow(64, 1e-3, 1e-3, fresh_bytes=0.0, predicted_fresh_bytes=0.0)
    assert bare.error_with_measured_faults is None
    v = pv.Validation("mlp", "x", "cpu", 1, "cpu", "median", {}, [row, bare])
    assert v.mape_with_measured_faults is None
    both = pv.Validation("mlp", "x", "cpu", 1, "cpu", "median", {},
                         [row, pv.ValidationRow(64, 1e-3, 1e-3, fresh_bytes=0.0, predicted_fresh_bytes=0.0,
                                                first_touch_s_per_byte=0.4e-9)])
    assert both.mape_with_measured_faults == pytest.approx(abs(row.error_with_measured_faults) / 2)
    assert both.to_dict()["rows"][0]["error_with_measured_faults"] == row.error_with_measured_faults


def test_rounds_take_the_median_and_report_each_rounds_mape(cpu_hw, monkeypatch):
    # width 8 is timed 1, 3, 2 ms in three rounds -> median 2 ms; width 16: 4, 4, 10 ms -> median 4 ms
    times = {8: iter([1e-3, 3e-3, 2e-3]), 16: iter([4e-3, 4e-3, 10e-3])}
    monkeypatch.setattr(pv, "time_training_step",
                        lambda model, width, *a, **k: pv.StepTiming(next(times[width]), 0.1))
    monkeypatch.setattr(pv, "predict",
                        lambda model, width, *a, **k: type("P", (), {"time_per_step_s": 2e-3 * (width // 8)}))
    v = pv.validate("mlp", [8, 16], cpu_hw, rounds=3, progress=False, **TINY_MLP)
    assert [r.measured_s for r in v.rows] == [2e-3, 4e-3]
    assert [r.rounds_s for r in v.rows] == [(1e-3, 3e-3, 2e-3), (4e-3, 4e-3, 10e-3)]
    assert v.mape == 0.0  # predictions 2 and 4 ms equal the medians
    # round 1: |2-1|/1, |4-4|/4 -> 0.5; round 2: |2-3|/3, 0 -> 1/6; round 3: 0, |4-10|/10 -> 0.3
    assert v.mape_by_round == pytest.approx([0.5, 1 / 6, 0.3])
    assert v.to_dict()["mape_by_round"] == pytest.approx([0.5, 1 / 6, 0.3])
    with pytest.raises(PerfmodelError, match="rounds 0 is not allowed"):
        pv.validate("mlp", [8], cpu_hw, rounds=0, progress=False, **TINY_MLP)


def test_out_of_memory_reported_as_does_not_fit(cpu_hw, monkeypatch):
    real = pv.time_training_step

    def fake(model, width, *a, **k):
        if width == 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, width, *a, **k)
    monkeypatch.setattr(pv, "time_training_step", fake)
    v = pv.validate("mlp", [8, 16], cpu_hw, warmup=0, repeats=1, progress=False, **TINY_MLP)
    assert v.rows[1].measured_s is None and v.rows[1].note == "does not fit" and v.rows[1].error is None
    assert v.mape == pytest.approx(abs(v.rows[0].error))


def test_fresh_process_times_in_a_spawned_worker(cpu_hw):
    v = pv.validate("mlp", [8], cpu_hw, warmup=0, repeats=2, progress=False, fresh_process=True, **TINY_MLP)
    assert v.rows[0].measured_s > 0 and v.to_dict()["fresh_process"] is True


def test_killed_worker_reported_as_does_not_fit(cpu_hw, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    def killed(threads, dtype, args, knobs, sentinels=None):
        if args[1] == 16:    # (model, width, ...): the OOM killer took the width-16 worker
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")
        return pv.StepTiming(1e-3, 0.0)
    monkeypatch.setattr(pv, "_time_in_fresh_process", killed)
    v = pv.validate("mlp", [8, 16], cpu_hw, progress=False, fresh_process=True, **TINY_MLP)
    assert v.rows[0].measured_s == 1e-3
    assert v.rows[1].measured_s is None and v.rows[1].note == "does not fit"


def test_other_errors_are_not_swallowed(cpu_hw, monkeypatch):
    def fake(*a, **k):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    monkeypatch.setattr(pv, "time_training_step", fake)
    with pytest.raises(RuntimeError, match="shapes"):
        pv.validate("mlp", [8], cpu_hw, progress=False, **TINY_MLP)


@pytest.mark.parametrize("exc, oom", [
    (MemoryError(), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), True),
    (RuntimeError("CUDA error: an illegal memory access"), False),
    (ValueError("out of range"), False),
])
def test_is_out_of_memory(exc, oom):
    assert pv.is_out_of_memory(exc) is oom


def test_threads_and_clock_follow_the_calibrated_profile(cpu_hw):
    d = cpu_hw.to_dict()
    d["calibration"] = {"provenance": {"kind": "cpu", "threads": 1, "clock": "cpu", "stat": "min"}}
    from perfmodel.hardware.profile import profile_from_dict
    hw = profile_from_dict(d)
    assert pv.execution_defaults(hw, "cpu") == (1, "cpu", "min")
    assert pv.execution_defaults(cpu_hw, "cpu") == (None, "wall", "median")
    v = pv.validate("mlp", [8], hw, warmup=0, repeats=3, progress=False, **TINY_MLP)
    assert v.threads == 1 and v.clock == "cpu" and v.stat == "min"


def test_cli_json(cpu_hw):
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8,16", "--batch", "4",
                                    "--set", "depth=1", "--set", "input_dim=8", "--hardware", "cpu-generic",
                                    "--warmup", "0", "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert [r["width"] for r in d["rows"]] == [8, 16]
    assert d["mape"] == pytest.approx(sum(abs(r["error"]) for r in d["rows"]) / 2)


def test_cli_table():
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", "--batch", "4",
                                    "--set", "depth=1", "--set", "input_dim=8", "--hardware", "cpu-generic",
                                    "--warmup", "0", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    assert "predicted" in res.output and "MAPE:" in res.output


def test_cuda_device_without_gpu_is_one_line(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", "--device", "cuda",
                                    "--hardware", "cpu-generic"])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and res.output.startswith("error: --device cuda needs a CUDA GPU")


def test_bad_model_and_dtype(cpu_hw):
    with pytest.raises(PerfmodelError, match="unknown model"):
        pv.validate("nope", [8], cpu_hw, progress=False)
    with pytest.raises(PerfmodelError, match="tf32"):
        pv.validate("mlp", [8], cpu_hw, dtype="tf32", progress=False, **TINY_MLP)


@pytest.mark.cuda
def test_cuda_step_timing():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    t = pv.time_training_step("mlp", 64, "cuda", warmup=1, repeats=2, **TINY_MLP)
    assert t.seconds > 0 and t.spread >= 0
    assert t.fresh_bytes is None   # page faults are counted on a CPU only


def test_unsteady_timings_are_timed_again(cpu_hw, monkeypatch):
    # width 8: spread 0.6 > 0.25 -> timed again: 0.3 (steadier, still > 0.25) -> again: 0.1, kept;
    # width 16 is steady at once.  Two re-timings in all (MAX_RETIMES = 2).
    tries = {8: iter([pv.StepTiming(5e-3, 0.6), pv.StepTiming(2e-3, 0.3), pv.StepTiming(3e-3, 0.1)]),
             16: iter([pv.StepTiming(4e-3, 0.05)])}
    monkeypatch.setattr(pv, "time_training_step", lambda model, width, *a, **k: next(tries[width]))
    v = pv.validate("mlp", [8, 16], cpu_hw, progress=False, **TINY_MLP)
    assert [(r.measured_s, r.spread) for r in v.rows] == [(3e-3, 0.1), (4e-3, 0.05)]
    assert v.retimed == 2 and v.to_dict()["retimed"] == 2
    # a timing that never settles keeps its steadiest try after MAX_RETIMES
    tries[8] = iter([pv.StepTiming(5e-3, 0.9), pv.StepTiming(6e-3, 0.5), pv.StepTiming(7e-3, 0.7)])
    tries[16] = iter([pv.StepTiming(4e-3, 0.05)])
    v = pv.validate("mlp", [8, 16], cpu_hw, progress=False, **TINY_MLP)
    assert (v.rows[0].measured_s, v.rows[0].spread) == (6e-3, 0.5) and v.retimed == 2
