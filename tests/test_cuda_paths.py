"""The CUDA code paths of calibrate and validate, run on the CPU through the fake CUDA backend.

``PERFMODEL_CUDA_BACKEND=fake`` (perfmodel.calibrate.backend.FakeCuda): one fake GPU whose tensors live on
the CPU and whose events read ``time.perf_counter``; the same code then runs as on a real GPU
(events + synchronize around each block, NVML readings, device properties, tf32 precision).
"""
import json

import pytest
from click.testing import CliRunner
from perfmodel.calibrate import backend, timing
from perfmodel.calibrate.plan import CalibrationPlan

from perfmodel.cli import main

GPU_TINY = CalibrationPlan("tiny-gpu", gemm_cube=(8, 32), gemm_rnn_batch=(), gemm_small=(), gemm_wide_n=(),
                gemm_bmm=((2, 8, 8, 8),),
                memory_bytes=(1024, 65536), overhead_chain=4, rnn_hidden=(16,), rnn_batch=(2,), rnn_steps=(3,),
                conv_models=(("speech", 16, {"batch": 1, "seq_len": 30, "freq_bins": 41, "target_len": 4}),),
                warmup=1, repeats=3, min_block_s=1e-4, dtypes=("fp32", "tf32"))
TINY_MLP = ["--batch", "4", "--set", "depth=1", "--set", "input_dim=8"]


@pytest.fixture
def fake_cuda(monkeypatch, tmp_path, one_torch_thread):
    """The fake backend, a home of its own, and a count of the CUDA events recorded."""
    monkeypatch.setenv(backend.ENV, "fake")
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))
    events = {"n": 0}
    real = backend.FakeCuda.event

    def counted(self):
        events["n"] += 1
        return real(self)
    monkeypatch.setattr(backend.FakeCuda, "event", counted)
    return events


def test_backend_selection(monkeypatch):
    monkeypatch.delenv(backend.ENV, raising=False)
    assert type(backend.get()) is backend.TorchCuda and backend.place("cuda:0") == "cuda:0"
    monkeypatch.setenv(backend.ENV, "fake")
    assert backend.get().fake and backend.place("cuda:1") == "cpu" and backend.place("cpu") == "cpu"
    monkeypatch.setenv(backend.ENV, "nope")
    with pytest.raises(Exception, match="PERFMODEL_CUDA_BACKEND='nope' is not allowed; allowed: torch, fake"):
        backend.get()


def test_cuda_event_timer_brackets_the_block(fake_cuda):
    calls = []
    t = timing.CudaEventTimer("cuda:0").block(lambda: calls.append(1), 5)
    assert len(calls) == 5 and t >= 0 and fake_cuda["n"] == 2      # one start and one end event
    m = timing.measure(lambda: None, "cuda:0", warmup=1, repeats=3, min_block_s=1e-5)
    assert len(m.samples) == 3 and fake_cuda["n"] == 2 + 2 * (1 + 3)  # warm-up block + 3 samples


def test_calibrate_gpu_then_validate_on_cuda(fake_cuda, monkeypatch, tmp_path):
    import perfmodel.calibrate.plan
    monkeypatch.setattr(perfmodel.calibrate.plan, "plan_for", lambda kind, quick: GPU_TINY)
    out = tmp_path / "gpu.json"
    res = CliRunner().invoke(main, ["calibrate", "--gpu", "--quick", "--no-progress", "-o", str(out)])
    assert res.exit_code == 0, res.output
    prof = json.loads(out.read_text())
    prov = prof["calibration"]["provenance"]
    assert prof["kind"] == "gpu" and prov["base_profile"] == "H100-SXM5"   # guessed from "Fake H100 ..."
    assert prov["device"] == backend.FakeCuda.NAME and prov["capability"] == "9.0" and prov["cuda"] == "fake"
    assert prov["clock"] == "cuda_events" and prov["nvml"] == "fake" and prov["clocks_end"]["sm_clock_MHz"] == 1980
    assert prov["dtypes"] == ["fp32", "tf32"]          # tf32 kept: capability 9.0 >= 8
    assert "allocation" not in prof["calibration"]     # no first-touch cost on a GPU
    assert {p["dtype"] for p in prof["calibration"]["gemm"]} == {"fp32", "tf32"}
    assert prof["calibration"]["rnn"] and prof["calibration"]["conv"]
    assert fake_cuda["n"] > 0

    fake_cuda["n"] = 0
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", *TINY_MLP, "--device", "cuda",
                                    "--hardware", str(out), "--warmup", "0", "--repeats", "2", "--same-process",
                                    "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)
    assert v["clock"] == "cuda_events" and v["threads"] is None and v["rows"][0]["measured_s"] > 0
    assert v["rows"][0]["fresh_bytes_per_step"] is None          # page faults are counted on a CPU only
    assert set(v["drift"]["before"]) >= {"dispatch", "gemm", "copy_cache"}   # the profile's own points re-timed
    assert fake_cuda["n"] > 0


def test_validate_cuda_in_a_fresh_process_inherits_the_backend(fake_cuda):
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", *TINY_MLP, "--device", "cuda",
                                    "--hardware", "H100-SXM5", "--warmup", "0", "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)
    assert v["fresh_process"] is True and v["rows"][0]["measured_s"] > 0 and v["drift"] is None


# -- the same paths on a real GPU (``pytest -m cuda``, run by ``make gpu-check``) ----------------------
def _needs_cuda(monkeypatch):
    import torch
    monkeypatch.delenv(backend.ENV, raising=False)
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.cuda
def test_real_cuda_event_timer(monkeypatch):
    import torch
    _needs_cuda(monkeypatch)
    a = torch.randn(1024, 1024, device="cuda")
    t = timing.measure(lambda: a @ a, "cuda", warmup=2, repeats=3, min_block_s=1e-3)
    # 2 x 1024^3 FLOP in more than 1 us and less than 1 s
    assert 1e-6 < t.seconds < 1.0 and t.number >= 1


@pytest.mark.cuda
def test_real_cuda_tiny_calibration_and_validation(monkeypatch, tmp_path):
    from perfmodel.calibrate import run

    from perfmodel import hardware
    from perfmodel.validate import validate
    _needs_cuda(monkeypatch)
    prof, _ = run.calibrate(hardware.load("H100-SXM5"), GPU_TINY, "gpu", "cuda:0", progress=False)
    prov = prof["calibration"]["provenance"]
    assert prov["kind"] == "gpu" and prov["clock"] == "cuda_events" and prov["device"] and prov["cuda"]
    assert all(p["time_s"] > 0 for p in prof["calibration"]["gemm"])
    path = run.write_profile(prof, tmp_path / "gpu.json")
    v = validate("mlp", [64], hardware.load(str(path)), device="cuda", warmup=1, repeats=2, progress=False,
                 batch=4, depth=1, input_dim=8)
    assert v.rows[0].measured_s > 0 and v.clock == "cuda_events" and v.drift is not None
