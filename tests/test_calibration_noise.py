"""The calibration's noise guard (perfmodel.calibrate.interleave) on a simulated clock
(perfmodel.calibrate.timing.FakeTimer).

Every probe here is a dummy callable whose "time" the fake timer dictates, so the expected numbers
are the scripted costs: a point timed at 1 ms with one 30 ms sample has median 1 ms and a spread far
over the limit, and so on.
"""
import json

import pytest
from click.testing import CliRunner
from perfmodel.calibrate import interleave
from perfmodel.calibrate.devices import Context
from perfmodel.calibrate.plan import CalibrationPlan
from perfmodel.calibrate.tasks import Probe
from perfmodel.calibrate.timing import FakeTimer, spread_of

from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.hardware.stability import unstable_warning

PLAN = CalibrationPlan("fake", warmup=1, repeats=4, min_block_s=5e-4)   # 1 ms calls: one call per block
MS = 1e-3


def _ctx(plan=PLAN):
    return Context("cpu", "cpu", ("fp32",), plan, "wall", "median")


def _fn(name):
    def fn():
        return None
    fn.__name__ = name
    return fn


def _probe(fn, section="x"):
    return Probe(section, fn.__name__, lambda: {"t": fn}, lambda t: {"name": fn.__name__, "time_s": t["t"].seconds,
                                                                  "spread": t["t"].spread})


def _blocks(timer, fn):
    return sum(1 for f, _, _ in timer.log if f is fn)


@pytest.fixture
def run(monkeypatch):
    """``run_probes`` with the re-measurement budget read on the fake timer's clock, not the wall clock."""
    def run(probes, timer, **kw):
        monkeypatch.setattr(interleave, "_now", lambda: timer.now)
        return interleave.run_probes(probes, _ctx(), timer, progress=False, **kw)
    return run


def test_spread_is_the_p10_p90_range_over_the_median():
    # samples 1..5: deciles by linear interpolation, p10 = 1 + 0.4 * (2 - 1) = 1.4, p90 = 4 + 0.6 * (5 - 4) = 4.6
    assert spread_of([5, 1, 4, 2, 3]) == pytest.approx((4.6 - 1.4) / 3)
    assert spread_of([2.0]) == 0.0
    # 1 ms four times and one 30 ms burst: p90 = 1 + 0.6 * 29 = 18.4 ms -> spread 17.4 / 1 = 17.4
    assert spread_of([1, 1, 1, 1, 30]) == pytest.approx(17.4)


def test_repeats_are_interleaved_across_points(run):
    a, b, c = _fn("a"), _fn("b"), _fn("c")
    timer = FakeTimer(cost=lambda fn: MS)
    out = run([_probe(a), _probe(b), _probe(c)], timer)
    order = [f.__name__ for f, _, _ in timer.log if f in (a, b, c)]
    # one warm-up block each, then 4 rounds of one sample of every point
    assert order == ["a", "b", "c"] + ["a", "b", "c"] * 4
    assert [p["time_s"] for _, p in out.points] == pytest.approx([MS] * 3)
    assert out.unstable == [] and out.remeasured == 0


def test_short_calls_get_an_untimed_call_before_each_block(run):
    """Under PRECALL_MAX_S (10 ms) a block starts after one untimed call (the cache state of back-to-back
    calls): 1 warm-up + 4 x (1 + 1) = 9 calls; a 20 ms call is timed cold: 1 + 4 x 1 = 5 calls."""
    calls = {"short": 0, "long": 0}

    def counting(name):
        def fn():
            calls[name] += 1
        fn.__name__ = name
        return fn
    short, long_ = counting("short"), counting("long")
    run([_probe(short), _probe(long_)], FakeTimer(cost=lambda fn: 20 * MS if fn is long_ else MS))
    assert calls == {"short": 9, "long": 5}


def test_a_burst_on_one_sample_is_remeasured_once(run):
    a, b, c = _fn("a"), _fn("b"), _fn("c")
    calls = {"b": 0}

    def cost(fn):
        if fn is b:
            calls["b"] += 1
            return 30 * MS if calls["b"] == 3 else MS   # b's 2nd sample (block 3, after its warm-up) is hit
        return MS
    timer = FakeTimer(cost)
    out = run([_probe(a), _probe(b), _probe(c)], timer)
    # a and c: 1 warm-up + 4 samples; b twice that (its samples 1, 30, 1, 1 ms: spread 11.6 > 0.25)
    assert (_blocks(timer, a), _blocks(timer, b), _blocks(timer, c)) == (5, 10, 5)
    assert out.remeasured == 1 and out.unstable == []
    assert dict((p["name"], p["time_s"]) for _, p in out.points) == pytest.approx({"a": MS, "b": MS, "c": MS})


def test_a_load_over_a_whole_group_is_caught_by_the_reference_point(run):
    """Group 1 (section x) runs at 2x speed-down end to end, so its spreads are 0, but its reference
    times are 2x those of group 2 (section y) > LOAD_LIMIT = 1.25: both points are timed again."""
    a, b, c = _fn("a"), _fn("b"), _fn("c")
    loaded = {"on": True}

    def cost(fn):
        if fn is c:
            loaded["on"] = False   # group 2 starts: the load is gone
        return MS * (2 if loaded["on"] else 1)
    timer = FakeTimer(cost)
    out = run([_probe(a), _probe(b), _probe(c, "y")], timer)
    assert out.remeasured == 2 and out.unstable == []
    assert [p["time_s"] for _, p in out.points] == pytest.approx([MS, MS, MS])
    assert out.provenance()["noise_guard"]["reference_worst_ratio"] == pytest.approx(2.0)


def test_remeasurement_is_bounded_and_the_unstable_point_is_named(run):
    noisy, calm = _fn("noisy"), _fn("calm")
    calls = {"n": 0}

    def cost(fn):
        if fn is not noisy:
            return MS
        calls["n"] += 1
        return MS * (10 if calls["n"] % 2 else 1)   # alternates 10 ms / 1 ms forever
    timer = FakeTimer(cost)
    out = run([_probe(noisy), _probe(calm)], timer)
    # 1 + MAX_REMEASURES attempts of (1 warm-up + 4 samples), then it stops
    assert _blocks(timer, noisy) == (1 + interleave.MAX_REMEASURES) * 5
    assert _blocks(timer, calm) == 5
    assert out.unstable == ["noisy"]
    assert out.provenance()["unstable_points"] == {"count": 1, "names": ["noisy"]}
    assert out.provenance()["noise_guard"]["remeasure_budget_spent"] is False


def test_remeasurement_stops_when_its_time_budget_is_spent(run):
    """Everything unstable: the first re-measurement pass repeats the whole first pass, so with a
    budget of half the first pass's time no second re-measurement pass starts."""
    noisy = [_fn(f"n{i}") for i in range(3)]
    calls = {"n": 0}

    def cost(fn):
        calls["n"] += 1
        return MS * (10 if calls["n"] % 2 else 1)
    timer = FakeTimer(cost)
    out = run([_probe(f) for f in noisy], timer, remeasure_budget=0.5)
    assert [_blocks(timer, f) for f in noisy] == [2 * 5] * 3
    assert out.unstable == ["n0", "n1", "n2"] and out.remeasured == 3
    assert out.provenance()["noise_guard"]["remeasure_budget_spent"] is True


def test_a_rejected_probe_is_left_out(run):
    def refuse():
        raise ValueError("fp8 needs multiples of 16")
    p = Probe("x", "refused", refuse, lambda t: {"time_s": 1.0}, rejects=(ValueError,))
    out = run([p, _probe(_fn("a"))], FakeTimer())
    assert [pt["name"] for _, pt in out.points] == ["a"] and out.unstable == []


# -- the command line ----------------------------------------------------------------------------
TINY = CalibrationPlan("tiny", sections=("memory",), memory_bytes=(1024, 4096), layer_ops=(), warmup=1, repeats=4,
            min_block_s=1e-5)


@pytest.fixture
def fake_calibration(monkeypatch, tmp_path):
    """``calibrate --cpu`` on the tiny plan, timed by a FakeTimer the test scripts, on a quiet load average."""
    import perfmodel.calibrate.plan
    import perfmodel.calibrate.provenance
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(perfmodel.calibrate.plan, "plan_for", lambda kind, quick: TINY)
    monkeypatch.setattr(perfmodel.calibrate.provenance.os, "getloadavg", lambda: (0.0, 0.0, 0.0))

    def run(cost):
        monkeypatch.setattr(interleave, "block_timer", lambda device, clock: FakeTimer(cost))
        out = tmp_path / "p.json"
        res = CliRunner().invoke(main, ["calibrate", "--cpu", "--no-progress", "-o", str(out)])
        assert res.exit_code == 0, res.output
        return res, out
    return run


def test_a_busy_run_writes_the_profile_names_the_points_and_warns(fake_calibration):
    calls = {"n": 0}

    def alternating(fn):   # every block alternates 1 ms / 10 ms: no point is ever stable
        calls["n"] += 1
        return MS * (10 if calls["n"] % 2 else 1)
    res, out = fake_calibration(alternating)
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    # 3 generic memory ops x 2 sizes = 6 points
    assert warnings == [w for w in warnings if "unstable" in w] and len(warnings) == 1
    assert "warning: 6 of 6 calibration points" in warnings[0] and "machine looks busy" in warnings[0]
    assert "--threads 1 --clock cpu" in warnings[0]      # a CPU profile: the steadier settings
    prof = json.loads(out.read_text())
    unstable = prof["calibration"]["provenance"]["unstable_points"]
    assert unstable["count"] == 6 and "memory copy 1024 B" in unstable["names"]
    assert sorted(f.name for f in out.parent.iterdir() if f.name.startswith(".p.json")) == []  # no temp left
    assert unstable_warning(hardware.load(str(out))) == warnings[0]

    # validate and predict on that profile repeat the warning once
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--widths", "8", "--batch", "4", "--set", "depth=1",
                                    "--set", "input_dim=8", "--hardware", str(out), "--warmup", "0", "--repeats", "1",
                                    "--same-process", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning: 6 of 6 calibration points") == 1
    res = CliRunner().invoke(main, ["predict", "--model", "mlp", "--width", "8", "--hardware", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning: 6 of 6 calibration points") == 1


def test_a_quiet_run_prints_no_warning(fake_calibration):
    res, out = fake_calibration(lambda fn: MS)
    assert "warning" not in res.output
    prov = json.loads(out.read_text())["calibration"]["provenance"]
    assert prov["unstable_points"] == {"count": 0, "names": []}
    assert prov["noise_guard"]["spread_limit"] == interleave.SPREAD_LIMIT
    assert unstable_warning(hardware.load(str(out))) is None
    res = CliRunner().invoke(main, ["predict", "--model", "mlp", "--width", "8", "--hardware", str(out)])
    assert res.exit_code == 0 and "warning" not in res.output


def test_unstable_warning_of_profiles_without_the_record():
    assert unstable_warning(hardware.load("cpu-generic")) is None
    assert unstable_warning({"name": "x", "calibration": {"provenance": {}}}) is None
    w = unstable_warning({"name": "x", "calibration": {"provenance": {"unstable_points": {
        "count": 5, "names": ["a", "b", "c", "d", "e"]}}}})
    assert w.startswith("warning: 5 calibration points of profile 'x'") and "(a, b, c, ...)" in w
