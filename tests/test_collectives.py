"""Collectives calibration: the alpha-beta fit, the DeepBench import, and two gloo processes on loopback."""
import json
from pathlib import Path

import numpy as np
import pytest
from perfmodel.calibrate.collectives import fit_alpha_beta, import_deepbench, main, read_deepbench_allreduce

from perfmodel import hardware
from perfmodel.errors import PerfmodelError
from perfmodel.parallel import collectives as coll

SAMPLE = Path(__file__).parent / "data" / "deepbench_allreduce_sample.csv"   # rows of shared/data/deepbench


def test_fit_recovers_alpha_beta_from_exact_points():
    # points made by the ring formula with alpha = 5 us, beta = 1/10 GB/s: the fit returns them
    alpha, beta = 5e-6, 1e-10
    pts = [{"bytes": s, "world_size": p, "time_s": 2 * (p - 1) * alpha + 2 * (p - 1) / p * s * beta}
           for s in (1e4, 1e6, 1e8) for p in (2, 4, 8)]
    fit = fit_alpha_beta("allreduce", pts)
    assert fit["alpha_s"] == pytest.approx(alpha, rel=1e-6)
    assert fit["beta_s_per_byte"] == pytest.approx(beta, rel=1e-6)
    assert fit["bandwidth_GBps"] == pytest.approx(10.0, rel=1e-6) and fit["max_rel_error"] < 1e-9
    with pytest.raises(PerfmodelError, match="two message sizes"):
        fit_alpha_beta("allgather", pts[:1])


def test_deepbench_import_p100_rejects_placeholder_rows():
    rows = read_deepbench_allreduce(SAMPLE)
    assert rows[0] == {"gpu": "P100", "bytes": 400_000, "world_size": 2, "time_s": pytest.approx(1.01933665e-4)}
    sec = import_deepbench(SAMPLE, "P100")
    ar = sec["allreduce"]
    assert ar["link"] == "intra_node" and ar["world_size"] == [2, 4, 8]       # P100-SXM2: 8 per node
    # the 16-device rows are 2.0 ms from 0.4 MB to 258 MB: not measurements, rejected
    assert sec["provenance"]["rows_rejected"] == 7 and sec["provenance"]["rows_used"] == 21
    # 64.5M floats = 258 MB on 8 P100s in 76.6 ms: bus bandwidth 2*7/8*258e6/76.6e-3 = 5.9 GB/s
    assert 4 < ar["bandwidth_GBps"] < 8 and ar["median_rel_error"] < 0.10
    with pytest.raises(PerfmodelError, match="none usable"):
        import_deepbench(SAMPLE, "V100")


def test_deepbench_section_written_into_a_profile(tmp_path):
    out = tmp_path / "p100.json"
    import_deepbench(SAMPLE, "P100", "P100-SXM2", out)
    hw = hardware.load(str(out))
    ln = coll.link(hw, False)
    cal = hw.calibration["collectives"]["allreduce"]
    assert (ln.alpha_s, ln.beta_s_per_byte) == (cal["alpha_s"], cal["beta_s_per_byte"])
    # the fitted ring model predicts the 8-GPU 258 MB row within 25 %
    t = coll.ring_allreduce_s(258e6, 8, ln)
    assert t == pytest.approx(76.630785e-3, rel=0.25)


def test_gloo_two_processes_on_loopback(tmp_path):
    out = tmp_path / "local-cpu.json"
    path = main(out, "cpu-generic", 2, [4096, 1 << 18], "gloo", warmup=1, reps=3)
    assert Path(path) == out
    hw = hardware.load(str(out))
    sec = hw.calibration["collectives"]
    for c in ("allreduce", "allgather"):
        assert sec[c]["link"] == "intra_node" and sec[c]["world_size"] == [2]
        assert [p["bytes"] for p in sec[c]["points"]] == [4096, 1 << 18]
        assert all(p["time_s"] > 0 for p in sec[c]["points"])
        assert sec[c]["alpha_s"] >= 0 and sec[c]["beta_s_per_byte"] >= 0
    assert sec["provenance"]["backend"] == "gloo" and sec["provenance"]["world_size"] == 2
    # a second calibration keeps the rest of the file
    d = json.loads(out.read_text())
    assert d["name"] == "cpu-generic" and np.isfinite(sec["allreduce"]["alpha_s"])
