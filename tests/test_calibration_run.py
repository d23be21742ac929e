"""Calibration machinery: atomic writes, interruption, --gpu without a GPU, NVML failures, tiny end-to-end run.

Every run here uses a tiny :class:`perfmodel.calibrate.plan.CalibrationPlan` (a handful of points), never ``--quick``.
"""
import json
import sys
import types

import pytest
from click.testing import CliRunner
from perfmodel.calibrate import overhead, provenance, run
from perfmodel.calibrate.atomic import write_json_atomic
from perfmodel.calibrate.plan import CalibrationPlan

from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.cost import rates
from perfmodel.predict import predict

TINY = CalibrationPlan("tiny", gemm_cube=(8, 32), gemm_rnn_batch=(4,), gemm_rnn_hidden=(16,), gemm_rnn_gates=(4,),
            gemm_small=(), gemm_wide_n=(), gemm_bmm=((4, 8, 8, 8),), memory_bytes=(1024, 65536),
            overhead_chain=4, rnn_hidden=(16, 32), rnn_batch=(2, 4), rnn_steps=(3,),
            conv_models=(("speech", 16, {"batch": 1, "seq_len": 30, "freq_bins": 41, "target_len": 4}),),
            warmup=1, repeats=2, min_block_s=1e-4)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "profiles"


@pytest.fixture(scope="module")
def tiny_profile():
    prof, warnings = run.calibrate(hardware.load(hardware.DEFAULT_CPU), TINY, "cpu", "cpu", progress=False,
                                   threads=1, clock="cpu", command="pytest")
    return prof


# -- atomic writes -----------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "p.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [f.name for f in p.parent.iterdir()] == ["p.json"]


def test_atomic_write_failure_keeps_previous(tmp_path, monkeypatch):
    p = tmp_path / "p.json"
    write_json_atomic(p, {"a": 1})

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr("perfmodel.calibrate.atomic.os.replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["p.json"]


def test_interrupted_calibration_leaves_previous_profile_intact(home, monkeypatch):
    """Ctrl-C mid-run (simulated as KeyboardInterrupt from the 3rd memory point): nothing is written."""
    home.mkdir(parents=True)
    out = home / "local-cpu.json"
    out.write_text('{"previous": true}')
    calls = {"n": 0}
    real_callable = run.memory.memory_callable

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_callable(*a, **k)
    monkeypatch.setattr(run.memory, "memory_callable", flaky)
    tiny = CalibrationPlan("tiny", sections=("memory",), memory_bytes=(1024, 4096, 16384))
    monkeypatch.setattr(sys.modules["perfmodel.calibrate.plan"], "plan_for", lambda kind, quick: tiny)
    res = CliRunner().invoke(main, ["calibrate", "--cpu", "--quick", "--no-progress"])
    assert res.exit_code != 0
    assert calls["n"] == 3
    assert out.read_text() == '{"previous": true}'
    assert sorted(f.name for f in home.iterdir()) == ["local-cpu.json"]


# -- --gpu without CUDA ----------------------------------------------------------
def test_gpu_without_cuda_is_one_line_exit_2(home, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(main, ["calibrate", "--gpu"])
    assert res.exit_code == 2
    assert res.output == ("error: --gpu needs a CUDA GPU, none found (torch.cuda.is_available() is False); "
                          "use --cpu\n")
    assert not home.exists()


def test_needs_exactly_one_of_gpu_cpu(home):
    res = CliRunner().invoke(main, ["calibrate"])
    assert res.exit_code == 2 and res.output.startswith("error: choose one of --gpu or --cpu")


# -- NVML -------------------------------------------------------------------
def test_pynvml_absent_is_noted(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    nv = provenance.Nvml(0)
    assert not nv.ok
    assert nv.static()["nvml"].startswith(("unavailable (ImportError", "unavailable (ModuleNotFoundError"))
    assert nv.sample() == {}


def test_pynvml_failing_is_noted_and_run_continues(monkeypatch):
    class NVMLError(Exception):
        pass

    fake = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(NVMLError("Driver Not Loaded")))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    nv = provenance.Nvml(0)
    assert nv.static() == {"nvml": "unavailable (NVMLError: Driver Not Loaded)"}
    prov = {"kind": "gpu", "clocks_start": nv.sample()}
    assert provenance.finish(prov, nv) == [] or all("load average" in w for w in provenance.finish(prov, nv))
    assert prov["clocks_end"] == {}


def test_pynvml_reading_failure_gives_none(monkeypatch):
    def raise_(*a):
        raise RuntimeError("not supported")
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "h",
                                 nvmlDeviceGetClockInfo=raise_, nvmlDeviceGetTemperature=lambda h, s: 61,
                                 nvmlDeviceGetPowerUsage=raise_, nvmlDeviceGetCurrentClocksThrottleReasons=raise_,
                                 NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_TEMPERATURE_GPU=0)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    s = provenance.Nvml(0).sample()
    assert s["sm_clock_MHz"] is None and s["temperature_C"] == 61


def test_throttle_warning_over_10_percent():
    assert provenance.throttle_warning({"sm_clock_MHz": 1980}, {"sm_clock_MHz": 1800}) is None  # 9 %
    w = provenance.throttle_warning({"sm_clock_MHz": 1980}, {"sm_clock_MHz": 1500})
    assert w.startswith("warning: SM clock fell from 1980 MHz to 1500 MHz") and "24% drop" in w
    assert provenance.throttle_warning({}, {"sm_clock_MHz": 1500}) is None


# -- base profile guess -------------------------------------------------------------
@pytest.mark.parametrize("device, expected", [
    ("NVIDIA H100 80GB HBM3", "H100-SXM5"),
    ("NVIDIA H100 PCIe", "H100-SXM5"),
    ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
    ("NVIDIA A100-SXM4-40GB", "A100-SXM4-80GB"),
    ("Tesla V100-SXM2-16GB", "V100-SXM2"),
    ("Tesla P100-SXM2-16GB", "P100-SXM2"),
    ("Tesla M40 24GB", "M40"),
    ("NVIDIA GeForce GTX TITAN X", "TitanX-Maxwell"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA B200", "B200"),
    ("NVIDIA GeForce RTX 4090", "H100-SXM5"),
])
def test_guess_gpu_base(device, expected):
    names = ["TitanX-Maxwell", "M40", "P100-SXM2", "V100-SXM2", "A100-SXM4-80GB", "H100-SXM5", "H200", "B200",
             "cpu-generic", "local-gpu"]
    assert run.guess_gpu_base(device, names) == expected


def test_per_call_cost_is_the_intercept_of_the_chain_line():
    # t_n = F + n * L with F = 30 us, L = 6 us: t_1 = 36 us, t_100 = 630 us -> F = 36 - (630 - 36) / 99 = 30
    assert overhead.per_call(36e-6, 630e-6, 100) == pytest.approx(30e-6)
    assert overhead.per_call(5e-6, 630e-6, 100) == 0.0  # noise below the line: no per-call cost


# -- tiny end-to-end ---------------------------------------------------------------
def test_tiny_calibration_is_a_loadable_profile(tiny_profile, home):
    cal = tiny_profile["calibration"]
    prov = cal["provenance"]
    assert prov["kind"] == "cpu" and prov["threads"] == 1 and prov["clock"] == "cpu"
    assert prov["source"] == "microbenchmark" and prov["torch"] and prov["date"]
    assert {"mkl", "onednn", "device"} <= set(prov)
    assert {"dispatch", "gemm", "elementwise", "optimizer", "default", "backward_call",
            "optimizer_call"} <= set(cal["overhead_us"])
    layouts = {(p["trans_a"], p["trans_b"]) for p in cal["gemm"]}
    assert layouts == {(False, True), (False, False), (True, False)}
    assert any(p["batch"] > 1 for p in cal["gemm"])
    assert {p["op"] for p in cal["memory"]} == {"copy", "elementwise", "reduction", "batchnorm", "batchnorm_bwd",
                                                "maxpool", "maxpool_bwd"}
    assert all(p["bwd_s"] > 0 for p in cal["rnn"]) and cal["conv"]
    path = run.write_profile(tiny_profile, run.default_output("cpu"))
    assert path == home / "local-cpu.json"
    hw = hardware.load("local-cpu")
    assert hw.name == "local-cpu" and hw.calibrated
    assert hardware.local_cpu_profile() == "local-cpu"
    assert rates.gemm_efficiency(hw, "fp32", 16, 16, 16, 1, True) > 0
    for model, width, knobs in (("mlp", 32, {}), ("wordlm", 16, {"seq_len": 4}),
                                ("speech", 16, {"batch": 1, "seq_len": 30, "freq_bins": 41, "target_len": 4})):
        assert predict(model, width, hw, **knobs).time_per_step_s > 0


def test_write_profile_rejects_invalid(tmp_path, tiny_profile):
    bad = json.loads(json.dumps(tiny_profile))
    bad["calibration"]["gemm"][0]["m"] = -1
    with pytest.raises(Exception, match=r"calibration\.gemm\[0\]\.m"):
        run.write_profile(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_from_csv_needs_base(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("x\n")
    res = CliRunner().invoke(main, ["calibrate", "--from-csv", str(f)])
    assert res.exit_code == 2 and "--from-csv needs --base" in res.output


def test_from_csv_and_collectives_delegate(tmp_path, monkeypatch):
    import perfmodel.calibrate.collectives as coll
    import perfmodel.calibrate.deepbench as db
    f = tmp_path / "g.csv"
    f.write_text("x\n")
    seen = {}

    def fake_csv(files, base, gpu=None, name=None):
        seen["csv"] = (list(files), base.name, gpu)
        d = base.to_dict()
        d["name"] = "imported"
        return d
    monkeypatch.setattr(db, "profile_from_csv", fake_csv)
    out = tmp_path / "imp.json"
    res = CliRunner().invoke(main, ["calibrate", "--from-csv", str(f), "--base", "V100-SXM2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert seen["csv"] == ([str(f)], "V100-SXM2", None)
    assert hardware.load(str(out)).name == "imported"

    def fake_main(output_path=None, base_profile=None, **kw):
        seen["coll"] = (output_path, base_profile)
        return output_path
    monkeypatch.setattr(coll, "main", fake_main)
    res = CliRunner().invoke(main, ["calibrate", "--collectives", "-o", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    assert seen["coll"] == (str(tmp_path / "c.json"), None)


def test_min_statistic():
    from perfmodel.calibrate.timing import measure
    t = measure(lambda: None, repeats=4, min_block_s=1e-5, stat="min")
    assert t.seconds == min(t.samples) <= t.median_s


def test_warmup_by_count_and_by_time(monkeypatch):
    import perfmodel.calibrate.timing as tm
    calls = []
    # a fake clock: each call of fn advances it 1 ms
    clock = {"t": 0.0}

    def fn():
        calls.append(1)
        clock["t"] += 1e-3
    monkeypatch.setitem(tm.CLOCKS, "wall", lambda: clock["t"])
    tm.measure(fn, warmup=3, repeats=2, min_block_s=0.0)
    assert len(calls) == 3 + 2  # 3 warm-up calls, then 2 samples of one call
    calls.clear()
    # 50 ms of warm-up at 1 ms per call is 50 calls (more than warmup=3); blocks of 10 ms are 10 calls
    t = tm.measure(fn, warmup=3, repeats=2, min_block_s=0.01, min_warmup_s=0.05)
    assert t.number == 10 and len(calls) == 50 + 2 * 10
    assert t.seconds == pytest.approx(1e-3)
