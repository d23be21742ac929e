"""``perfmodel validate --sample N``: the seeded draw of configurations, its ranges, a tiny real run."""
import json
import math
import random

import pytest
from click.testing import CliRunner

import perfmodel.validate_sample as vs
from perfmodel import hardware
from perfmodel.architectures import MODELS, get_spec
from perfmodel.cli import main
from perfmodel.errors import PerfmodelError
from perfmodel.predict import predict


@pytest.fixture(scope="module")
def cpu_hw():
    return hardware.load(hardware.DEFAULT_CPU)


def test_log_uniform_integers_have_log_width_probabilities():
    """In [1, 3] the integer v has probability ln((v + 1/2) / (v - 1/2)) / ln(3.5 / 0.5):
    ln 3 / ln 7 = 0.565, ln(5/3) / ln 7 = 0.263, ln(7/5) / ln 7 = 0.173."""
    rng = random.Random(0)
    draws = [vs.log_uniform_int(rng, 1, 3) for _ in range(20000)]
    for v in (1, 2, 3):
        expected = math.log((v + 0.5) / (v - 0.5)) / math.log(3.5 / 0.5)
        assert draws.count(v) / len(draws) == pytest.approx(expected, abs=0.012)
    with pytest.raises(PerfmodelError, match=r"range \[5, 4\] is not allowed"):
        vs.log_uniform_int(rng, 5, 4)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_draw_is_seeded_and_respects_the_ranges(model, cpu_hw):
    configs, draws = vs.draw_configs(model, 4, cpu_hw, seed=7)
    assert (configs, draws) == vs.draw_configs(model, 4, cpu_hw, seed=7)   # reproducible
    assert configs != vs.draw_configs(model, 4, cpu_hw, seed=8)[0]
    assert len(configs) == 4 and draws >= 4
    knobs = get_spec(model).knobs
    for width, k in configs:
        assert vs.WIDTH[0] <= width <= vs.WIDTH[1] and width % vs.WIDTH_MULTIPLE.get(model, 1) == 0
        assert vs.BATCH[0] <= k["batch"] <= vs.BATCH[1]
        assert ("seq_len" in k) == ("seq_len" in knobs)
        if "seq_len" in k:
            assert vs.SEQ_LEN[0] <= k["seq_len"] <= vs.SEQ_LEN[1]
        for name, r in vs.KNOBS[model].items():
            assert k[name] in r if isinstance(r, list) else r[0] <= k[name] <= r[1]
        assert set(k) <= set(knobs)
        assert predict(model, width, cpu_hw, **k).time_per_step_s <= vs.MAX_STEP_S


def test_fixed_knobs_are_in_every_draw_and_not_drawn(cpu_hw):
    """--set block=llama --set attention=flash --batch 4 under --sample: every configuration has them, the
    width, sequence, layers and vocabulary are still drawn, and the drawn space no longer lists them."""
    fixed = {"block": "llama", "attention": "flash", "batch": 4}
    ranges = vs.Ranges(fixed=fixed)
    assert set(ranges.for_model("transformer")) == {"width", "seq_len", "layers", "vocab"}
    configs, _ = vs.draw_configs("transformer", 4, cpu_hw, seed=3, ranges=ranges)
    assert all(k["block"] == "llama" and k["attention"] == "flash" and k["batch"] == 4 for _, k in configs)
    assert len({(w, k["seq_len"], k["layers"], k["vocab"]) for w, k in configs}) == 4
    with pytest.raises(PerfmodelError, match="block"):
        vs.draw_configs("transformer", 2, cpu_hw, ranges=vs.Ranges(fixed={"block": "bert"}))


def test_too_tight_a_bound_is_one_error(cpu_hw):
    with pytest.raises(PerfmodelError, match=r"only 0 of 100 draws of 'resnet' are predicted at most 1e-09 s"):
        vs.draw_configs("resnet", 2, cpu_hw, max_step_s=1e-9)


def test_tiny_sample_runs(cpu_hw, one_torch_thread):
    ranges = vs.Ranges(width=(8, 16), batch=(2, 4), knobs={"depth": (1, 2), "input_dim": (8, 16), "classes": [3]})
    v, info = vs.validate_sample("mlp", 2, cpu_hw, seed=0, ranges=ranges, warmup=0, repeats=1, progress=False)
    assert info["n"] == 2 and info["ranges"]["classes"] == [3] and info["ranges"]["width"] == [8, 16]
    for r in v.rows:
        assert 8 <= r.width <= 16 and 2 <= r.knobs["batch"] <= 4 and r.knobs["classes"] == 3
        assert r.measured_s > 0 and r.error == pytest.approx((r.predicted_s - r.measured_s) / r.measured_s)
    assert v.mape == pytest.approx(sum(abs(r.error) for r in v.rows) / 2)
    assert v.to_dict()["rows"][0]["knobs"] == v.rows[0].knobs
    worst = vs.worst_rows(v)
    assert sorted(worst) == [0, 1] and abs(v.rows[worst[0]].error) >= abs(v.rows[worst[1]].error)


def test_error_classes_find_the_half_that_is_off():
    from types import SimpleNamespace as Row
    # 8 rows: batches 4..32.  The four small batches (<= median 16: 4, 8, 12, 16) err -0.20, -0.22,
    # -0.18, -0.20: mean -0.20, sd = sqrt((0 + 0.0004 + 0.0004 + 0) / 3) = 0.01633, t = -0.20 / (0.01633 / 2)
    # = -24.5.  The large ones err +0.05, -0.05, +0.10, -0.10: mean 0, t = 0.  Widths alternate, so the
    # width halves mix both: each holds two small-batch rows (mean -0.10 with a large spread).
    errs = [-0.20, -0.22, -0.18, -0.20, 0.05, -0.05, 0.10, -0.10]
    rows = [Row(width=64 if i % 2 else 512, knobs={"batch": 4 * (i + 1)}, error=e, error_speed_adjusted=e / 2)
            for i, e in enumerate(errs)]
    classes = vs.error_classes(Row(rows=rows))
    top = classes[0]
    assert (top["knob"], top["side"], top["split"], top["n"]) == ("batch", "<=", 16, 4)
    assert top["mean_error"] == pytest.approx(-0.20) and top["mape"] == pytest.approx(0.20)
    assert top["t"] == pytest.approx(-0.20 / (math.sqrt(0.0008 / 3) / 2))
    assert top["mean_error_speed_adjusted"] == pytest.approx(-0.10)
    assert {(c["knob"], c["side"]) for c in classes} == {("batch", "<="), ("batch", ">"),
                                                         ("width", "<="), ("width", ">")}
    assert vs.class_line(classes).startswith("worst class: batch <= 16 (4 configurations): mean error -20.0%")
    # the same errors in random order over the batches: no half is off by more than the scatter
    scattered = [0.1, -0.1, 0.05, -0.05, 0.1, -0.1, 0.05, -0.05]
    calm = [Row(width=64, knobs={"batch": 4 * (i + 1)}, error=e, error_speed_adjusted=None)
            for i, e in enumerate(scattered)]
    assert vs.class_line(vs.error_classes(Row(rows=calm))).startswith("no class of configurations off systematically")
    # no scatter at all: exact predictions are no class; a constant error is one (finite t, valid JSON)
    flat = [Row(width=64, knobs={"batch": 4 * (i + 1)}, error=e, error_speed_adjusted=None)
            for i, e in enumerate([0.0] * 4 + [0.1] * 4)]
    t = {c["side"]: c["t"] for c in vs.error_classes(Row(rows=flat))}
    assert t["<="] == 0.0 and t[">"] == pytest.approx(0.1 / 1e-9)


def test_cli_sample_json_and_table(one_torch_thread):
    args = ["validate", "--model", "mlp", "--sample", "2", "--seed", "3", "--hardware", "cpu-generic",
            "--max-step-s", "0.003", "--warmup", "0", "--repeats", "1", "--same-process"]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["sample"]["n"] == 2 and d["sample"]["seed"] == 3 and d["sample"]["max_step_s"] == 0.003
    assert len(d["rows"]) == 2 and all(r["predicted_s"] <= 0.003 and "batch" in r["knobs"] for r in d["rows"])
    assert d["mape"] == pytest.approx(sum(abs(r["error"]) for r in d["rows"]) / 2)
    assert sorted(d["worst_rows"]) == [0, 1]
    assert d["error_classes"] == []          # two rows are too few to split
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "largest errors" in res.stdout and "MAPE over 2 of 2 configurations" in res.stdout
    assert "error by class: too few configurations to split" in res.stdout


@pytest.mark.parametrize("extra, message", [
    (["--widths", "8", "--sample", "2"], "error: give one of --widths LIST or --sample N\n"),
    ([], "error: give one of --widths LIST or --sample N\n"),
    (["--sample", "2", "--set", "depth=0"], "error: depth='0' for model 'mlp' must be an integer >= 1\n"),
])
def test_cli_sample_bad_input_is_one_line(extra, message):
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--hardware", "cpu-generic", *extra])
    assert res.exit_code == 2 and res.output == message


def test_cli_sample_must_be_positive():
    res = CliRunner().invoke(main, ["validate", "--model", "mlp", "--sample", "0"])
    assert res.exit_code == 2 and "'--sample': 0 is not in the range x>=1" in res.output
