"""Layout search (`perfmodel plan`), break-even speedups (`perfmodel whatif`) and the CLI."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.parallel.layout import Layout
from perfmodel.parallel.search import SearchSpace, dp_stops_paying, plan
from perfmodel.parallel.step import predict_parallel
from perfmodel.parallel.whatif import break_even, scaled_profile
from perfmodel.scenario import Scenario
from perfmodel.total import load_law

LAW_PATH = Path(__file__).parent / "data" / "steplaw_synthetic_charlm.json"   # synthetic fixture, not a fit
H100 = hardware.load("H100-SXM5")


@pytest.fixture(scope="module")
def law():
    return load_law(LAW_PATH)


def test_plan_rows_are_valid_layouts_and_match_the_scalar_model(law):
    p = plan(Scenario("wordlm", H100), [256, 1024, 4096], SearchSpace(64), 1e9, law)
    assert p.fastest is not None and p.fastest.width in (256, 1024, 4096)
    for r in p.rows:
        assert r.fits
        assert r.dp * r.tp * r.pp <= 64
        assert r.batch == r.dp * r.m * r.micro_batch
        # the vectorized search and the one-configuration path agree
        one = predict_parallel(Scenario("wordlm", H100), r.width, Layout(r.dp, r.tp, r.pp, r.m), r.batch)
        assert one.time_per_step_s == pytest.approx(r.time_per_step_s, rel=1e-9)
        # the fixture law counts examples of 150 tokens; wordlm's are 80: B_law = B x 80/150
        steps = float(law.steps(one.params, 1e9, r.batch * 80 / 150))
        assert r.steps == pytest.approx(steps)
        assert r.total_time_s == pytest.approx(steps * r.time_per_step_s)
        # the plan is never slower than data parallelism alone
        assert r.total_time_s <= r.best_dp_only_total_s * (1 + 1e-12)


def test_plan_marks_widths_that_fit_nowhere(law):
    titan = hardware.load("TitanX-Maxwell")
    p = plan(Scenario("wordlm", titan), [512, 16384], SearchSpace(1), 1e9, law)
    small, big = p.rows
    assert small.fits and small.dp == small.tp == small.pp == 1
    # 2 layers x 4 x (2 x 16384^2) + 2 x 10,000 x 16,384 params = 4.62e9 params: 17 GiB of fp32 weights > 12 GiB
    assert not big.fits and big.why == "no layout fits in memory"


def test_plan_respects_allowed_batches(law):
    p = plan(Scenario("charlm", H100), [256], SearchSpace(16, batches=(64,)), 1e9, law)
    assert p.rows[0].batch == 64


def test_plan_holds_the_batch_of_a_law_without_batch_law(law):
    """A law fitted at one batch says nothing about others: searching the batch would take the smallest
    (shortest steps, same step count).  The plan keeps the law's batch at equal tokens per step:
    32 law examples x 150 tokens / 80 tokens per wordlm sequence = 60 sequences -> 64, the nearest
    power of two in log, and says so."""
    from dataclasses import replace
    assert law.b_noise and law.batch_ref == 32 and law.tokens_per_example == 150
    one_batch = replace(law, b_noise=None)
    p = plan(Scenario("wordlm", H100), [256, 1024], SearchSpace(64), 1e9, one_batch)
    assert {r.batch for r in p.rows} == {64}
    assert "global batch held at 64" in p.law["batch_note"]
    # with its batch law (B_noise = 256) the same plan searches the batch and goes far past 64
    searched = plan(Scenario("wordlm", H100), [256, 1024], SearchSpace(64), 1e9, law)
    assert "batch_note" not in searched.law and min(r.batch for r in searched.rows) > 64
    # an explicit --batches wins over the held batch
    given = plan(Scenario("wordlm", H100), [256], SearchSpace(64, batches=(128,)), 1e9, one_batch)
    assert given.rows[0].batch == 128 and "batch_note" not in given.law


def test_dp_stops_paying():
    # doubling 1 -> 2 -> 4 devices halves the time, 4 -> 8 gains only 5 %: stops paying at dp = 4
    assert dp_stops_paying({1: 100.0, 2: 50.0, 4: 25.0, 8: 23.75, 16: 23.0}) == 4
    assert dp_stops_paying({1: 100.0, 2: 50.0}) is None


def test_plan_speed_20_widths_1024_devices(law):
    widths = np.unique(np.round(np.geomspace(256, 8192, 20)).astype(int))
    assert widths.size == 20
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        plan(Scenario("charlm", H100), widths, SearchSpace(1024), 1e9, law)
        best = min(best, time.perf_counter() - t0)
    assert best <= 2.0, f"plan over 20 widths x every layout for 1,024 devices took {best:.2f} s"


def test_scaled_profile_and_break_even(law):
    fast = scaled_profile(H100, "compute", 2.0)
    assert fast.peak_tflops["fp32"] == 2 * H100.peak_tflops["fp32"]
    assert scaled_profile(H100, "interconnect", 4.0).inter_node_bandwidth_GBps == 4 * 50
    r = break_even(Scenario("wordlm", H100), [256, 512, 1024], SearchSpace(8), 1e8, law, resources=("compute",),
                   max_factor=16)
    f = r["break_even"]["compute"]
    assert f[0] is None                                      # nothing smaller than the smallest width
    grid = {2 ** (k / 2) for k in range(1, 9)} | {1.0}
    assert all(x is None or x in grid for x in f[1:])


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_cli_predict_parallel_json():
    r = _run("predict", "--model", "wordlm", "--width", 512, "--batch", 64, "--dp", 2, "--tp", 2, "--pp", 2,
             "--micro-batches", 4, "--dataset-size", 1e8, "--steps-law", LAW_PATH, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for k in ("steps", "total_time_s", "comm_time_s", "bubble_fraction", "per_device_memory_bytes",
              "fits_in_memory"):
        assert k in d
    assert d["total_time_s"] == pytest.approx(d["steps"] * d["time_per_step_s"])
    assert d["layout"] == {"dp": 2, "tp": 2, "pp": 2, "micro_batches": 4} and d["devices"] == 8


@pytest.mark.parametrize("args,message", [
    (["--batch", 250, "--dp", 8], "error: batch 250 is not divisible by dp x micro-batches = 8 x 1 = 8"),
    (["--tp", 16, "--devices", 8], "error: tp x pp = 16 x 1 = 16 needs more devices than --devices 8"),
    (["--dp", 4, "--tp", 4, "--devices", 8], "error: layout dp=4 tp=4 pp=1 m=1 needs dp*tp*pp = 16 devices"),
    (["--pp", 8], "error: pp=8 is not allowed"),
    (["--dataset-size", 1e9], "error: --dataset-size and --steps-law go together"),
])
def test_cli_predict_bad_layouts_are_one_line_errors(args, message):
    r = _run("predict", "--model", "wordlm", "--width", 512, *args)
    assert r.exit_code == 2
    assert r.output.startswith(message) and r.output.count("\n") == 1


def test_cli_plan_and_whatif():
    r = _run("plan", "--model", "charlm", "--widths", "256,512", "--dataset-size", 1e9, "--steps-law", LAW_PATH,
             "--hardware", "H100-SXM5", "--devices", 16)
    assert r.exit_code == 0, r.output
    assert "fastest: width" in r.output
    r = _run("plan", "--model", "charlm", "--widths", "256,512", "--dataset-size", 1e9, "--steps-law", LAW_PATH,
             "--hardware", "H100-SXM5", "--devices", 16, "--json")
    d = json.loads(r.output)
    assert [row["width"] for row in d["rows"]] == [256, 512] and d["fastest"]["width"] in (256, 512)
    r = _run("whatif", "--model", "wordlm", "--widths", "256,512", "--dataset-size", 1e8, "--steps-law", LAW_PATH,
             "--devices", 4, "--resources", "memory", "--max-factor", 4, "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["break_even"]) == {"memory"}
    r = _run("plan", "--model", "charlm", "--widths", "256", "--dataset-size", -1, "--steps-law", LAW_PATH,
             "--devices", 4)
    assert r.exit_code == 2 and "dataset size" in r.output
