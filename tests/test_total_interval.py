"""Total time with an interval (perfmodel.total_interval): law draws x time-per-step spread."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel import hardware
from perfmodel.cli import main as cli
from perfmodel.steps.law import StepLaw, default_law_path
from perfmodel.total_interval import DEFAULT_MAPE, p_fastest, sigma_from_mape, step_time_mape, summarize, total_draws


def test_sigma_from_mape():
    # a normal error e with sd sigma has E|e| = sigma * sqrt(2/pi): MAPE 0.20 -> sigma = 0.20 * 1.2533 = 0.2507
    assert sigma_from_mape(0.20) == pytest.approx(0.2507, abs=1e-4)


def test_time_spread_alone_gives_the_lognormal_interval():
    # steps fixed at 1000, 2 s per step, sigma_t = 0.1: 80 % interval 2000 s * exp(+-1.2816 * 0.1) = [1759, 2274]
    d = total_draws(np.full((20000, 1), 1000.0), [2.0], 0.1)
    med, lo, hi = summarize(d)
    assert med[0] == pytest.approx(2000, rel=0.01)
    assert (lo[0], hi[0]) == pytest.approx((1759, 2274), rel=0.01)


def test_p_fastest_counts_joint_draws_and_ignores_what_does_not_fit():
    draws = np.array([[1.0, 2.0, 0.5], [1.5, 2.0, 0.1], [1.0, 0.5, 0.2], [1.0, 2.0, 0.3]])
    # width 3 never fits; among widths 1 and 2: draws 1, 2, 4 -> width 1; draw 3 -> width 2
    np.testing.assert_allclose(p_fastest(draws, [True, True, False]), [0.75, 0.25, 0.0])


def test_defaults_by_profile_source():
    # H100 carries a fitted in_step_fraction (docs/accuracy.md, held-out published runs); V100 does not
    assert step_time_mape(hardware.load("H100-SXM5"))[0] == DEFAULT_MAPE["datasheet_in_step"]
    assert step_time_mape(hardware.load("V100-SXM2"))[0] == DEFAULT_MAPE["datasheet"]

    class Hw:
        calibration = {"provenance": {"source": "microbenchmark",
                                      "validation": {"mape": 0.07, "date": "2026-12-01", "model": "mlp"}}}
    assert step_time_mape(Hw()) == (0.07, "validate --record on 2026-12-01 (mlp)")
    Hw.calibration = {"provenance": {"source": "csv"}}
    assert step_time_mape(Hw())[0] == DEFAULT_MAPE["csv"]


def test_plan_json_has_intervals_and_p_fastest_summing_to_one():
    res = CliRunner().invoke(cli, ["plan", "--model", "charlm", "--widths", "256..2048", "--dataset-size", "1e8",
                                   "--devices", "8", "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output[res.output.index("{"):])
    rows = [r for r in out["rows"] if r["fits"]]
    assert sum(r["p_fastest"] for r in rows) == pytest.approx(1.0)
    for r in rows:
        lo, hi = r["total_time_interval_80"]
        assert lo < r["total_time_median_s"] < hi
    # the shipped charlm law measured D up to 1e6 characters: 1e8 / 1e6 = 100x beyond it (> 30x, so a warning);
    # width 2048 (depth 10, seq 150) lies beyond its largest measured parameter count as well
    assert out["extrapolation"]["dataset_x"] == pytest.approx(100.0)
    assert out["extrapolation"]["params_x"] > 1 and "extrapolat" in out["uncertainty"]["warning"]
    assert "warning: the step law extrapolates" in res.output   # the one line (stderr is mixed in here)


def test_predict_with_law_gives_the_interval(tmp_path):
    res = CliRunner().invoke(cli, ["predict", "--model", "charlm", "--width", "256", "--devices", "8",
                                   "--dataset-size", "1e6", "--steps-law", str(default_law_path("charlm")), "--json"])
    out = json.loads(res.output[res.output.index("{"):])
    lo, hi = out["total_time_interval_80"]
    assert lo < out["total_time_median_s"] < hi and out["steps_interval_80"][0] < out["steps_median"]
    from perfmodel.steps.law import load_law
    m_max = load_law(default_law_path("charlm")).measured_range["M"][1]      # the widest run's parameters
    assert out["extrapolation"]["params_x"] == pytest.approx(max(1.0, out["params"] / m_max), rel=1e-6)


def test_old_law_without_draws_says_unavailable(tmp_path):
    law = StepLaw("charlm", a=1.7, k=0.46, gamma=1.0, b=0.0, batch_ref=32, tokens_per_example=32)
    from perfmodel.total_interval import single_interval
    out = single_interval(law, 1e6, 1e8, 32, 0.1, hardware.load("H100-SXM5"))
    assert out["total_time_interval_80"] is None and out["intervals"].startswith("unavailable")
    assert math.isnan(out["extrapolation"]["params_x"])


def test_report_answer_gives_interval_and_probability():
    from perfmodel.report import build_report
    html = build_report("charlm", dataset_size=1e8, devices=8, widths=[256, 512, 1024])
    assert "80% interval" in html and "of the joint draws" in html


def test_validate_record_round_trip(tmp_path):
    from perfmodel.hardware.record import record_validation
    prof = tmp_path / "v100.json"
    res = CliRunner().invoke(cli, ["calibrate", "--from-csv", "tests/data/deepbench_gemm_v100_sample.csv",
                                   "--base", "V100-SXM2", "-o", str(prof), "--no-progress"])
    assert res.exit_code == 0, res.output
    hw = hardware.load(str(prof))
    assert step_time_mape(hw)[0] == DEFAULT_MAPE["csv"]          # no record yet: the source's default
    record_validation(hw, 0.123, "mlp", 5, "perfmodel validate ...")
    again = hardware.load(str(prof))
    assert step_time_mape(again)[0] == 0.123
    assert again.calibration["provenance"]["validation"]["by_model"]["mlp"]["configurations"] == 5


def test_record_refuses_a_datasheet_profile_before_any_step():
    res = CliRunner().invoke(cli, ["validate", "--model", "mlp", "--widths", "16", "--hardware", "H100-SXM5",
                                   "--record"])
    assert res.exit_code == 2 and "--record needs a calibrated profile file" in res.output
