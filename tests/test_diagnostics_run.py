"""``perfmodel diagnose`` end to end on tiny models, its CLI, CSV/JSON output and the plot."""
import csv
import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from perfmodel.cli.diagnose import diagnose as diagnose_cmd
from perfmodel.diagnostics import run
from perfmodel.errors import PerfmodelError

REQUIRED = ("width", "params", "seed", "direct_distance", "path_length", "step_size", "angle",
            "confusion", "diversity")
TINY_LM = {"seq_len": 6, "depth": 1, "val_size": 64}


@pytest.fixture(scope="module")
def charlm_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "diag.csv"
    res = run.diagnose("charlm", [8, 16], seeds=2, steps=4, batch=4, probe=3, knobs=TINY_LM,
                       progress=False, csv_path=out)
    return res, out


def test_rows_have_required_columns_and_sane_values(charlm_result):
    res, _ = charlm_result
    assert [(r["width"], r["seed"]) for r in res["rows"]] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for r in res["rows"]:
        assert all(k in r for k in REQUIRED)
        assert r["steps"] == 4
        # triangle inequality: the straight line is never longer than the path
        assert 0 < r["direct_distance"] <= r["path_length"] * (1 + 1e-9)
        assert r["step_size"] == pytest.approx(r["path_length"] / 4)
        assert 0 <= r["angle"] <= math.pi
        assert 1 / 3 - 1e-9 <= r["diversity"] and r["batch_bound"] == pytest.approx(3 * r["diversity"])
    # parameter count of CharLM(width, depth=1, vocab=32, embed=width):
    # embed 32w + input_proj (w*2w + 2w) + 1 recurrent (w*2w + 2w) + softmax (32w + 32)
    w = 8
    assert res["rows"][0]["params"] == 32 * w + 2 * (2 * w * w + 2 * w) + 32 * w + 32


def test_trends_and_json_and_csv(charlm_result):
    res, out = charlm_result
    for col in ("direct_distance", "step_size", "angle", "diversity"):
        fit = res["trends"][col]["loglog"]
        assert {"slope", "lo", "hi", "n", "verdict"} <= set(fit) and fit["n"] == 4
        paired = res["trends"][col]["loglog_paired"]
        assert paired["groups"] == 2 and paired["n"] == 4
    # confusion_cos is 0 when no pair points apart; such rows cannot enter a log fit
    assert 2 <= res["trends"]["confusion_cos"]["loglog"]["n"] <= 4
    assert 0 <= res["angle_mean"]["angle"]["mean"] <= math.pi
    text = json.dumps(run.jsonable(res), allow_nan=False)  # strict JSON: no NaN
    assert set(json.loads(text)) >= {"rows", "trends"}
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and float(rows[-1]["width"]) == 16
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_mlp_and_depth_sweep():
    res = run.diagnose("mlp", [4, 8], seeds=1, steps=3, batch=4, probe=4, knobs={"depth": 1, "val_size": 8},
                       depths=[1, 2], progress=False, optimizer="adam", lr=1e-2)
    assert len(res["rows"]) == 2 and res["rows"][0]["optimizer"] == "adam"
    sweep = res["depth_sweep"]
    assert [r["depth"] for r in sweep["rows"]] == [1, 2]
    assert "confusion_cos" in sweep["trends"]


def test_bad_input_raises_perfmodel_error():
    with pytest.raises(PerfmodelError):
        run.diagnose("charlm", [0], seeds=1, steps=2, progress=False)
    with pytest.raises(PerfmodelError):
        run.diagnose("charlm", [8], seeds=1, steps=2, optimizer="rmsprop", progress=False)
    with pytest.raises(PerfmodelError):
        run.diagnose("nosuchmodel", [8], seeds=1, steps=2, progress=False)


def test_cli_json_and_errors(tmp_path):
    runner = CliRunner()
    args = ["--model", "charlm", "--widths", "8..16", "--seeds", "1", "--steps", "3", "--batch", "4",
            "--probe", "3", "--seq-len", "6", "--set", "depth=1", "--set", "val_size=64",
            "--json", "--no-progress", "-o", str(tmp_path / "d.csv")]
    res = runner.invoke(diagnose_cmd, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["width"] for r in data["rows"]] == [8, 16]
    assert "step_size" in data["trends"] and (tmp_path / "d.csv").exists()
    bad = runner.invoke(diagnose_cmd, ["--model", "charlm", "--widths", "64..x"])
    assert isinstance(bad.exception, PerfmodelError)


def test_plot_diagnostics_returns_figure(charlm_result):
    from perfmodel.diagnostics.plots import plot_diagnostics
    fig = plot_diagnostics(run.jsonable(charlm_result[0])["rows"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert any("direct distance" in t for t in titles) and any("log-log slope" in t for t in titles)


def test_trends_and_plots_do_not_import_torch():
    code = ("import sys, perfmodel.diagnostics.trends, perfmodel.diagnostics.plots; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_default_knobs_are_the_step_law_study_models():
    # the models `steps measure` fits laws on (perfmodel/steps/sweep.py DEFAULTS): charlm is an RHN of
    # depth 2 on sequences of 32, not the reference depth 10 x 150, whose 4 widths x 3 seeds take hours
    assert run.study_knobs("charlm") == {"seq_len": 32, "depth": 2}
    res = run.diagnose("charlm", [8], seeds=1, steps=2, batch=2, probe=2, knobs={"val_size": 64}, progress=False)
    assert res["rows"][0]["depth"] == 2
    # a knob given wins over the default
    res = run.diagnose("charlm", [8], seeds=1, steps=2, batch=2, probe=2, knobs={"val_size": 64, "depth": 1},
                       progress=False)
    assert res["rows"][0]["depth"] == 1
