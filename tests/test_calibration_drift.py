"""``perfmodel.calibrate.drift``: which of a profile's points are re-timed, and the ratio arithmetic."""
from pathlib import Path

import perfmodel.calibrate.drift as dr
import perfmodel.calibrate.overhead as overhead
import pytest
from click.testing import CliRunner
from perfmodel.calibrate.deepbench import profile_from_csv
from perfmodel.calibrate.timing import Timing

import perfmodel.validate as pv
from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.hardware.profile import profile_from_dict

GEMM = Path(__file__).parent / "data" / "deepbench_gemm_v100_sample.csv"


def _gemm(m, n, k, t, **kw):
    return {"dtype": "fp32", "m": m, "n": n, "k": k, "batch": 1, "trans_a": False, "trans_b": True, "time_s": t, **kw}


CAL = {
    "overhead_us": {"dispatch": 2.0},
    "gemm": [
        _gemm(64, 64, 64, 1e-5),        # 2*64^3 = 5.2e5 FLOPs: nearest 1e6
        _gemm(256, 256, 512, 1e-4),     # 6.7e7: nearest 1e8
        _gemm(512, 512, 2048, 1e-3),    # 1.07e9: nearest 1e9
        _gemm(4, 4096, 65536, 1e-2),    # 2.1e9 but far from a cube (aspect 16384): never chosen
        _gemm(512, 512, 2048, 5e-3, trans_b=False),  # another layout: not x @ W^T
    ],
    "memory": [{"op": "copy", "bytes": b, "time_s": b * 1e-10} for b in (2**10, 2**19, 2**22, 2**28)]
    + [{"op": "elementwise", "bytes": 2**30, "time_s": 1.0}],
}


def test_sentinels_are_the_profiles_own_points():
    chosen = dr.sentinel_points(CAL)
    assert [g for g, _ in chosen] == ["dispatch", "gemm", "gemm", "gemm", "copy_cache", "copy_dram"]
    assert [(p["m"], p["n"], p["k"]) for g, p in chosen if g == "gemm"] == [(64, 64, 64), (256, 256, 512),
                                                                          (512, 512, 2048)]
    # 1 MiB: 2^19 and 2^22 B are 1 and 2 octaves away -> 2^19; DRAM: the largest copy, 2^28 B
    assert [p["bytes"] for g, p in chosen if g.startswith("copy")] == [2**19, 2**28]
    assert dr.sentinel_points({}) == [] and dr.measure_drift({}) is None


def test_ratios_are_now_over_calibrated(monkeypatch):
    # every re-timed call takes 2e-5 s now: dispatch 2e-5 / 2e-6 = 10; GEMMs 2, 0.2, 0.02 -> median 0.2;
    # copies 2e-5 / (2^19 * 1e-10) = 0.3815 and 2e-5 / (2^28 * 1e-10) = 7.45e-4
    fake = lambda fn, **kw: Timing(2e-5, 0.0, 1, (2e-5,))  # noqa: E731
    monkeypatch.setattr(dr, "measure", fake)
    monkeypatch.setattr(overhead, "measure", fake)  # the dispatch point is timed by perfmodel.calibrate.overhead
    d = dr.measure_drift(CAL, "cpu")
    assert d["dispatch"] == pytest.approx(10.0)
    assert d["gemm"] == pytest.approx(0.2)
    assert d["copy_cache"] == pytest.approx(2e-5 / (2**19 * 1e-10))
    assert d["copy_dram"] == pytest.approx(2e-5 / (2**28 * 1e-10))
    assert len(d["points"]) == 6 and d["points"][1]["what"] == "fp32 64x64x64"


def test_real_timing_of_small_points():
    small = {"overhead_us": {"dispatch": 1.0}, "gemm": [_gemm(16, 16, 16, 1e-6)],
             "memory": [{"op": "copy", "bytes": 4096, "time_s": 1e-6}]}
    d = dr.measure_drift(small, "cpu")
    assert set(d) == {"dispatch", "gemm", "copy_cache", "points"}
    assert all(r["now_s"] > 0 and r["ratio"] == r["now_s"] / r["calibrated_s"] for r in d["points"])


def test_validate_reports_drift_before_and_after(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(pv, "machine_drift", lambda hw, *a: calls.append(hw.name) or {"gemm": 1.1, "points": []})
    hw = hardware.load(hardware.DEFAULT_CPU)
    v = pv.validate("mlp", [8], hw, warmup=0, repeats=1, progress=False, batch=4, depth=1, input_dim=8)
    assert len(calls) == 2 and v.to_dict()["drift"] == {"before": {"gemm": 1.1, "points": []},
                                                        "after": {"gemm": 1.1, "points": []}}
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", "--batch", "4", "--set",
                                    "depth=1", "--set", "input_dim=8", "--hardware", "cpu-generic",
                                    "--warmup", "0", "--repeats", "1", "--same-process"])
    assert res.exit_code == 0, res.output
    assert "time now / calibrated" in res.output and "gemm 1.10 / 1.10" in res.output


def test_no_drift_for_a_datasheet_profile_or_another_device():
    assert pv.machine_drift(hardware.load(hardware.DEFAULT_CPU), "cpu", "wall", "median") is None
    # a GPU profile calibrated from DeepBench rows has GEMM points, but they were timed on a V100
    gpu = profile_from_dict(profile_from_csv([GEMM], hardware.load("V100-SXM2")))
    assert gpu.calibration["gemm"] and pv.machine_drift(gpu, "cpu", "wall", "median") is None
