"""Step-law forms, the choice by extrapolation and the prediction intervals (perfmodel.steps.forms,
.fit, .uncertainty): planted laws are recovered, the planted form is chosen, intervals cover."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel.cli import main as cli
from perfmodel.steps.fit import choose, fit_law
from perfmodel.steps.forms import FORMS
from perfmodel.steps.law import StepLaw, load_law, save_law
from perfmodel.steps.uncertainty import extrapolation, extrapolation_warning, interval

WIDTHS = (16, 32, 64, 128, 256)
SIZES = (50_000, 100_000, 200_000, 400_000)
B, T = 32, 32                       # batch and tokens per example: D/(B*T) steps per epoch


def M_of(w):
    return 3 * w * w + 100 * w


# The planted laws, one per form (S in steps, M parameters, D tokens, e = D/(B*T) steps per epoch)
PLANTED = {
    "power": (lambda M, D, e: 3.0 * D * M ** -0.6 + 150, {"k": 0.6, "gamma": 1.0, "b": 150}),
    "power_gamma": (lambda M, D, e: 300 * D ** 0.6 * M ** -0.6 + 400, {"k": 0.6, "gamma": 0.6, "b": 400}),
    "power_nob": (lambda M, D, e: 30 * D ** 0.8 * M ** -0.6, {"k": 0.6, "gamma": 0.8, "b": 0}),
    # epochs form D/(B*T) * (e_min + c*D^delta*M^-k) with e_min = 4, c = 3000, delta = -0.2:
    # a = c/(B*T) = 3000/1024 = 2.93, gamma = 1 + delta = 0.8
    "epochs": (lambda M, D, e: e * (4.0 + 3000 * D ** -0.2 * M ** -0.6),
               {"k": 0.6, "gamma": 0.8, "epochs_min": 4.0}),
}


def runs(fn, noise=0.05, seeds=2, rng_seed=1, cap=None):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for w in WIDTHS:
        for D in SIZES:
            for s in range(seeds):
                S = fn(M_of(w), D, D / (B * T)) * np.exp(noise * rng.standard_normal())
                capped = cap is not None and S > cap
                rows.append({"model": "charlm", "width": w, "params": M_of(w), "dataset_size": D, "batch": B,
                             "seed": s, "steps_to_min": min(S, cap) if capped else S, "capped": capped,
                             "tokens_per_example": T, "steps_per_epoch": D // (B * T)})
    cols = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0] if k not in ("model", "capped")}
    cols["model"] = np.array(["charlm"] * len(rows), dtype=object)
    cols["capped"] = np.array([r["capped"] for r in rows])
    cols["steps_to_converge"] = cols["steps_to_min"]
    return cols


@pytest.mark.parametrize("form", list(PLANTED))
def test_each_form_recovers_its_planted_law_and_cv_picks_it(form):
    fn, truth = PLANTED[form]
    law = fit_law(runs(fn), n_boot=0)
    assert law.form == form, law.cv["forms"]
    for p, v in truth.items():
        assert getattr(law, p) == pytest.approx(v, rel=0.1, abs=0.05), p
    # and the planted steps over the whole grid, within the 5 % noise (a and k trade off, so a itself is loose)
    M, D = np.meshgrid([M_of(w) for w in WIDTHS], SIZES)
    np.testing.assert_allclose(law.steps(M, D), fn(M, D, D / (B * T)), rtol=0.06)
    # the chosen form's held-out error is the smallest, up to the choice slack
    errs = {n: f["error"] for n, f in law.cv["forms"].items()}
    assert errs[form] <= min(errs.values()) * 1.1 + 0.005


def test_choice_prefers_fewer_parameters_within_the_slack():
    forms = [FORMS["power"], FORMS["power_gamma"]]
    # 0.050 vs 0.048: 0.050 <= 0.048 * 1.1 + 0.005 = 0.0578, so the 3-parameter form wins
    assert choose(forms, {"power": 0.050, "power_gamma": 0.048}) == "power"
    # 0.080 > 0.0578: the extra parameter pays
    assert choose(forms, {"power": 0.080, "power_gamma": 0.048}) == "power_gamma"


def test_80_percent_interval_covers_about_80_percent_when_extrapolating():
    # leave-widest-out coverage of the 80 % interval over three noise replicates of the planted power law
    fn = PLANTED["power"][0]
    cov = [fit_law(runs(fn, rng_seed=s), n_boot=100).coverage_80 for s in (2, 3, 4)]
    share = sum(c["coverage"] * c["n"] for c in cov) / sum(c["n"] for c in cov)
    assert 0.65 <= share <= 0.97


def test_the_largest_dataset_size_is_held_out_too():
    # the law extrapolates in D as well as in M, so tau and the coverage check also hold out the largest size:
    # trained on D <= 200,000, the 10 runs at D = 400,000 lie ln(400,000 / 200,000) = 0.693 e-folds beyond
    from perfmodel.steps.fit import _Data, dataset_fold
    from perfmodel.steps.forms import get_form
    R = runs(PLANTED["epochs"][0], noise=0.0)
    fold = dataset_fold(get_form("epochs"), _Data(R, "steps_to_min", B, T))
    assert fold["held_out_dataset_sizes"] == [400_000.0] and fold["n"] == len(WIDTHS) * 2
    np.testing.assert_allclose(fold["distance"], np.log(2.0))
    assert fold["median_abs_rel_error"] < 0.01          # the planted form extrapolates exactly without noise
    law = fit_law(runs(PLANTED["epochs"][0]), n_boot=40)
    held = [f for f in law.coverage_80["folds"] if "held_out_dataset_sizes" in f]
    assert held and held[0]["n"] == 10


def test_interval_arithmetic_without_parameter_spread():
    # every draw the same law, sigma = 0.1, no extrapolation: the 80 % interval is
    # S * exp(+-1.2816 * 0.1) = S * [0.880, 1.137] and the 95 % one S * exp(+-1.96 * 0.1) = S * [0.822, 1.217]
    law = StepLaw("charlm", a=2.0, k=0.5, gamma=1.0, b=100.0, batch_ref=32, tokens_per_example=32,
                  draws={"a": [2.0] * 50, "k": [0.5] * 50, "gamma": [1.0] * 50, "b": [100.0] * 50},
                  sigma_log=0.1, tau_extrap=0.5, measured_range={"M": [1e3, 1e6], "D": [1e4, 1e6]})
    S = 2.0 * 1e5 / 1e4 ** 0.5 + 100      # M = 1e4, D = 1e5: 2000 + 100 = 2100 steps
    out = interval(law, 1e4, 1e5)
    assert out["steps"] == pytest.approx(S, rel=0.01)
    assert out["interval_80"] == pytest.approx([S * 0.880, S * 1.137], rel=0.03)
    assert out["interval_95"] == pytest.approx([S * 0.822, S * 1.217], rel=0.04)
    assert out["extrapolation"] == {"params_x": 1.0, "dataset_x": 1.0}
    # 100x beyond the largest M: x = ln 100 = 4.6 e-folds, the tau term widens the interval
    far = interval(law, 1e8, 1e5)
    assert far["extrapolation"]["params_x"] == pytest.approx(100.0)
    assert far["interval_80"][1] / far["interval_80"][0] > 5 * (1.137 / 0.880)
    assert "100× the largest measured parameter count" in extrapolation_warning(law, 1e8, 1e5)
    assert extrapolation_warning(law, 2e7, 1e5) is None          # 20x: inside the 30x allowance


def test_censored_runs_stay_lower_bounds_in_every_form():
    fn = PLANTED["power"][0]
    R = runs(fn, noise=0.02, cap=2000.0)
    assert 0.15 < R["capped"].mean() < 0.5
    for form in FORMS:
        law = fit_law(R, form=form, n_boot=0)
        pred = law.steps(R["params"][R["capped"]], R["dataset_size"][R["capped"]])
        # a capped run's steps are a lower bound: the law does not predict far below it
        assert np.median(pred / R["steps_to_min"][R["capped"]]) > 0.95, form


def test_old_law_file_loads_with_intervals_unavailable(tmp_path):
    old = {"model": "charlm", "a": 1.7, "k": 0.46, "gamma": 1.0, "b": 0.0, "batch_ref": 32,
           "tokens_per_example": 32, "e_min": None, "b_noise": 35.0, "ci": {}, "n_runs": 12}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(old))
    law = load_law(p)
    out = interval(law, 1e5, 1e5)
    assert out["interval_80"] is None and out["intervals"].startswith("unavailable")
    assert np.isnan(extrapolation(law, 1e5, 1e5)["params_x"])
    res = CliRunner().invoke(cli, ["steps", "predict", str(p), "--params", "1e5", "--dataset-size", "1e5", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["interval_80"] is None


def test_steps_predict_json(tmp_path):
    law = fit_law(runs(PLANTED["power"][0]), n_boot=50, check_coverage=False)
    p = save_law(law, tmp_path / "law.json")
    M = 10 * law.measured_range["M"][1]
    res = CliRunner().invoke(cli, ["steps", "predict", str(p), "--params", str(M), "--dataset-size", "1e5", "--json"])
    out = json.loads(res.output)
    assert set(out) >= {"steps", "interval_80", "interval_95", "extrapolation"}
    assert out["extrapolation"] == {"params_x": pytest.approx(10.0), "dataset_x": 1.0}
    lo80, hi80 = out["interval_80"]
    assert out["interval_95"][0] < lo80 < out["steps"] < hi80 < out["interval_95"][1]


@pytest.mark.parametrize("field,value", [("batch_ref", 0), ("b_noise", -5), ("tokens_per_example", -1)])
def test_bad_law_fields_are_one_line_errors(tmp_path, field, value):
    d = {"model": "charlm", "a": 1.0, "k": 0.5, "gamma": 1.0, "b": 0.0, "batch_ref": 32, "tokens_per_example": 32,
         field: value}
    p = tmp_path / "law.json"
    p.write_text(json.dumps(d))
    res = CliRunner().invoke(cli, ["steps", "predict", str(p), "--params", "1e5", "--dataset-size", "1e5"])
    assert res.exit_code == 2 and f"field {field}={value}" in res.output and len(res.output.strip().splitlines()) == 1


HEADER = "model,width,params,dataset_size,batch,seed,steps_to_min,steps_to_converge,min_val_loss,epochs,wall_s,capped\n"
GOOD = "charlm,16,1000,50000,32,0,500,450,1.0,3.0,1.0,False\n"


@pytest.mark.parametrize("row,expect", [
    ("charlm,16,1000,50000,32,0,-5,450,1.0,3.0,1.0,False\n", "column steps_to_min of"),
    ("charlm,16,1000,50000,32,0,0,450,1.0,3.0,1.0,False\n", "has 0 in data row 2; steps_to_min must be positive"),
    ("charlm,16,-1000,50000,32,0,500,450,1.0,3.0,1.0,False\n", "column params"),
    ("charlm,16,1000,0,32,0,500,450,1.0,3.0,1.0,False\n", "column dataset_size"),
    ("charlm,16,1000,50000,32,0,500,450,1.0,3.0,1.0,maybe\n", "column capped of"),
])
def test_bad_runs_rows_are_one_line_errors(tmp_path, row, expect):
    p = tmp_path / "runs.csv"
    p.write_text(HEADER + GOOD + row)
    res = CliRunner().invoke(cli, ["steps", "fit", str(p)])
    assert res.exit_code == 2 and expect in res.output and "data row 2" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_non_utf8_runs_file(tmp_path):
    p = tmp_path / "runs.csv"
    p.write_bytes(HEADER.encode() + b"charlm,16,1000,50000,32,0,500,450,1.0,3.0,1.0,\xff\xfe\n")
    res = CliRunner().invoke(cli, ["steps", "fit", str(p)])
    assert res.exit_code == 2 and "is not UTF-8" in res.output


def test_suggest_prefers_a_wider_width_for_a_far_target():
    # planted power law measured at widths 16-256; the target is 100x the widest model: the run that
    # shrinks the target's interval most is one at a new, wider width (it moves M_max, so x falls)
    from perfmodel import hardware
    from perfmodel.steps.suggest import suggest
    R = runs(PLANTED["power"][0], seeds=1)
    R["knobs"] = np.array(['{"depth": 2, "seq_len": 32}'] * len(R["width"]), dtype=object)
    law = fit_law(R, n_boot=50, check_coverage=False)
    out = suggest(law, R, 100 * M_of(256), 4e5, hardware.load("cpu-generic"), budget_hours=1.0, n_sim=1,
                  n_boot=20)
    best = max(out["ranked"], key=lambda r: r["log_width_gain"])
    assert best["new_width"] and best["width"] in (512, 1024)
    assert out["total_hours"] <= 1.0 and all(r["cost_hours"] > 0 for r in out["ranked"])
    per_hour = [r["gain_per_hour"] for r in out["suggested"]]
    assert per_hour == sorted(per_hour, reverse=True)


def test_suggest_stays_inside_the_runs_corpus():
    # runs on the built-in tiny-shakespeare text: 1,115,394 characters in ceil(1,115,394 / 2,000) = 558
    # blocks, of which round(0.1 x 558) = 56 are validation, each at most 1,999 characters here:
    # 1,115,394 - 56 x 1,999 = 1,003,450 training characters at most.  The planted runs' largest size is
    # 400,000, so "3x the largest" (1,200,000) is no candidate, and 400,000 stays one.
    from perfmodel import hardware
    from perfmodel.steps.data import corpus_train_tokens
    from perfmodel.steps.suggest import suggest
    assert corpus_train_tokens("charlm", "shakespeare") == 1_115_394 - 56 * 1_999
    R = runs(PLANTED["power"][0], seeds=1)
    R["knobs"] = np.array(['{"depth": 2, "seq_len": 32}'] * len(R["width"]), dtype=object)
    R["corpus"] = np.array(["shakespeare"] * len(R["width"]), dtype=object)
    law = fit_law(R, n_boot=50, check_coverage=False)
    out = suggest(law, R, 100 * M_of(256), 4e5, hardware.load("cpu-generic"), n_sim=1, n_boot=20)
    sizes = {r["dataset_size"] for r in out["ranked"]}
    assert max(sizes) == 400_000 and 1_200_000 not in sizes
