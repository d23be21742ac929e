"""The speed probe of ``perfmodel validate``: the machine's speed sampled next to each configuration's
steps (``perfmodel.calibrate.drift.SpeedProbe``) and the error with that speed taken out."""
import perfmodel.calibrate.drift as dr
import pytest
from perfmodel.calibrate.timing import FakeTimer, measure

import perfmodel.validate as pv
from perfmodel.predict import BreakdownRow

SMALL = [("dispatch", {"time_s": 1e-6}),
         ("gemm", {"dtype": "fp32", "m": 16, "n": 16, "k": 16, "time_s": 4e-6}),
         ("copy_cache", {"op": "copy", "bytes": 4096, "time_s": 2e-6})]


def test_probe_ratios_are_now_over_calibrated_per_sample():
    # every call costs 1e-5 s on the fake clock, then 2e-5 s once the clock passes 1 s:
    # dispatch 1e-5 / 1e-6 = 10, gemm 1e-5 / 4e-6 = 2.5, copy 1e-5 / 2e-6 = 5; doubled when slow
    timer = FakeTimer(cost=lambda fn: 1e-5, load=lambda now: 1.0 if now < 1.0 else 2.0)
    probe = dr.SpeedProbe(SMALL, "cpu", timer=timer)
    assert probe.ratios() is None
    # warm-up is 2 calls per callable; blocks are 5 ms / 1e-5 s = 500 calls (499 after float rounding)
    assert [n for _, timed, _ in probe.entries for _, n in timed] == [int(dr.SAMPLE_BLOCK_S / 1e-5)] * 6
    assert probe.sample() == pytest.approx({"dispatch": 10.0, "gemm": 2.5, "copy_cache": 5.0})
    timer.now = 1.0                    # the machine turns twice as slow
    probe.sample()
    probe.sample()
    # medians over the three samples: the slow value twice
    assert probe.ratios() == pytest.approx({"dispatch": 20.0, "gemm": 5.0, "copy_cache": 10.0})


def test_speed_group_of_each_bound():
    cache, dram = 2**20, 2**28          # geometric midpoint 2^24 B
    assert dr.speed_group("compute", 1e9, cache, dram) == "gemm"
    assert dr.speed_group("overhead", 1.0, cache, dram) == "dispatch"
    assert dr.speed_group("memory", 2**23, cache, dram) == "copy_cache"
    assert dr.speed_group("memory", 2**25, cache, dram) == "copy_dram"
    assert dr.speed_group("memory", 2**30, None, dram) == "copy_dram"
    assert dr.speed_group("memory", 1.0, cache, None) == "copy_cache"
    assert dr.speed_group("network", 1.0, cache, dram) is None


def _row(bound, time_s, nbytes=0.0, repeat=1):
    return BreakdownRow("op", "x", "fwd", repeat, 0.0, nbytes, 0.0, 0.0, 0.0, time_s, bound)


def test_speed_adjusted_seconds_arithmetic():
    points = [("copy_cache", {"bytes": 2**20}), ("copy_dram", {"bytes": 2**28})]
    ratios = {"gemm": 1.5, "dispatch": 0.5, "copy_cache": 1.2, "copy_dram": 0.8}
    rows = [_row("compute", 3e-3),                       # 3 ms x 1.5 = 4.5 ms
            _row("memory", 1e-3, 2**26, repeat=2),       # 2^25 B per execution > 2^24: DRAM, 1 ms x 0.8
            _row("memory", 1e-3, 2**21),                 # cache: 1 ms x 1.2
            _row("overhead", 0.5e-3),                    # 0.5 ms x 0.5
            _row("network", 2e-3)]                       # no group: unchanged
    assert dr.speed_adjusted_seconds(rows, ratios, points) == pytest.approx(4.5e-3 + 0.8e-3 + 1.2e-3 + 0.25e-3 + 2e-3)


def test_between_runs_before_each_sample_not_in_warm_up():
    calls = []
    timer = FakeTimer(cost=lambda fn: 1e-3)
    t = measure(lambda: calls.append("fn"), warmup=3, repeats=4, min_block_s=1e-3, timer=timer,
                between=lambda: calls.append("between"))
    # 3 warm-up calls, then 4 x (between, 1 call of 1 ms = the whole block)
    assert calls == ["fn"] * 3 + ["between", "fn"] * 4
    assert t.median_s == pytest.approx(1e-3)


def test_error_with_the_speed_taken_out():
    # predicted 1 ms, measured 2 ms: -50 %; at the measured speed the prediction is 1.8 ms: -10 %
    row = pv.ValidationRow(64, 1e-3, 2e-3, speed={"gemm": 1.8}, speed_adjusted_predicted_s=1.8e-3)
    assert row.error == pytest.approx(-0.5) and row.error_speed_adjusted == pytest.approx(-0.1)
    other = pv.ValidationRow(128, 3e-3, 2e-3, speed={"gemm": 1.0}, speed_adjusted_predicted_s=2.2e-3)
    v = pv.Validation("mlp", "x", "cpu", 1, "cpu", "median", {}, [row, other])
    assert v.mape_speed_adjusted == pytest.approx((0.1 + 0.1) / 2)
    assert v.to_dict()["rows"][0]["error_speed_adjusted"] == pytest.approx(-0.1)
    # a row without the probe: no adjusted MAPE rather than one over part of the rows
    bare = pv.ValidationRow(256, 1e-3, 1e-3)
    assert pv.Validation("mlp", "x", "cpu", 1, "cpu", "median", {}, [row, bare]).mape_speed_adjusted is None


def test_a_real_step_carries_the_speed_next_to_it():
    t = pv.time_training_step("mlp", 8, "cpu", warmup=1, repeats=2, sentinels=SMALL, batch=4, depth=1, input_dim=8)
    assert set(t.speed) == {"dispatch", "gemm", "copy_cache"} and all(v > 0 for v in t.speed.values())
    assert pv.time_training_step("mlp", 8, "cpu", warmup=1, repeats=2, batch=4, depth=1, input_dim=8).speed is None
