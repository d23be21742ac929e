"""Total time to train = steps(M, D, B) x time per step(M, B, hardware, layout)."""
from pathlib import Path

import numpy as np
import pytest

from perfmodel import hardware
from perfmodel.errors import PerfmodelError
from perfmodel.parallel.layout import Layout
from perfmodel.scenario import Scenario
from perfmodel.steps.law import StepLaw
from perfmodel.total import check_dataset_size, load_law, predict_total, total_time_s

LAW_PATH = Path(__file__).parent / "data" / "steplaw_synthetic_charlm.json"   # synthetic fixture, not a fit
H100 = hardware.load("H100-SXM5")


def test_total_is_steps_times_time_per_step():
    law = load_law(LAW_PATH)
    d = predict_total(Scenario("charlm", H100), 512, Layout(dp=4), 1e9, law, batch=128)
    # the law (tests/data/steplaw_synthetic_charlm.json): (a D^gamma M^-k + b)(1 + B_noise/B)/(1 + B_noise/B_ref),
    # at least e_min D / (B * 150)
    m, b = d["params"], 128
    s = (2e4 * 1e9 ** 0.35 * m ** -0.15 + 500) * (1 + 256 / b) / (1 + 256 / 32)
    s = max(s, 1.0 * 1e9 / (b * 150))
    assert d["steps"] == pytest.approx(s)
    assert d["total_time_s"] == pytest.approx(s * d["time_per_step_s"])
    assert d["steps_law_model"] == "charlm" and "steps_law_note" not in d
    assert np.allclose(total_time_s([2, 3], [10.0, 1.0]), [20.0, 3.0])


def test_past_the_critical_batch_more_devices_stop_reducing_steps():
    # S(B) = S_min (1 + B_noise / B): with B_noise = 256, going from B = 4096 to 8192 saves only
    # (1 + 256/4096) / (1 + 256/8192) = 1.0303x steps although it doubles the devices
    law = StepLaw(model="charlm", a=1e4, k=0.1, gamma=0.3, b=0.0, batch_ref=256, b_noise=256.0)
    s = law.steps(1e7, 1e9, np.array([4096, 8192]))
    assert s[0] / s[1] == pytest.approx((1 + 256 / 4096) / (1 + 256 / 8192))


def test_law_batch_is_converted_at_equal_tokens_per_step():
    # the fixture law was "measured" on 150-token examples; wordlm runs 80-token sequences, so a global
    # batch of 64 sequences is 64 x 80 / 150 = 34.13 of the law's examples
    law = load_law(LAW_PATH)
    d = predict_total(Scenario("wordlm", H100), 256, Layout(), 1e9, law, batch=64)
    assert d["law_examples_per_model_example"] == pytest.approx(80 / 150)
    assert d["steps"] == pytest.approx(float(law.steps(d["params"], 1e9, 64 * 80 / 150)))
    assert d["critical_batch_model_examples"] == pytest.approx(256 / (80 / 150))
    d = predict_total(Scenario("wordlm", H100, {"seq_len": 150}), 256, Layout(), 1e9, law, batch=64)
    assert d["law_examples_per_model_example"] == 1.0


def test_law_for_another_model_is_flagged_and_inputs_checked():
    law = load_law(LAW_PATH)
    d = predict_total(Scenario("wordlm", H100), 256, Layout(), 1e9, law, batch=32)
    assert d["steps_law_note"] == "step law fitted for 'charlm' applied to 'wordlm'"
    with pytest.raises(PerfmodelError, match="go together"):
        predict_total(Scenario("wordlm", H100), 256, Layout(), 1e9, None)
    with pytest.raises(PerfmodelError, match="dataset size 0 is not allowed"):
        check_dataset_size(0)
    with pytest.raises(PerfmodelError, match="cannot read law file"):
        load_law("/nonexistent/law.json")


def test_a_law_measured_at_other_knobs_says_so(tmp_path):
    """steps fit records what every run shared; a plan at other knobs carries one note naming them."""
    import csv

    from perfmodel.steps.fit import fit_law
    from perfmodel.steps.runs import read_runs
    from perfmodel.total import law_fields, law_task_note
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min",
                               "steps_to_converge", "min_val_loss", "epochs", "wall_s", "corpus", "optimizer",
                               "lr", "knobs"])
        w.writeheader()
        for i, (width, D) in enumerate([(16, 1e5), (32, 1e5), (64, 1e5), (16, 3e5), (32, 3e5), (64, 3e5)]):
            # width is the first knob that varies: it is the fit's axis, not part of the task
            w.writerow({"model": "charlm", "width": width, "params": 100 * width ** 2, "dataset_size": D,
                        "batch": 32, "seed": 0, "steps_to_min": D / width, "steps_to_converge": D / width,
                        "min_val_loss": 1.5, "epochs": 5, "wall_s": 1, "corpus": "shakespeare",
                        "optimizer": "adam", "lr": 0.002,
                        "knobs": f'{{"depth": 2, "seq_len": 64, "vocab": {65 + i % 2}}}'})
    law = fit_law(read_runs(path), n_boot=0)
    # vocab varies across the runs (65, 66), so it is not part of the measured task
    assert law.measured_task == {"knobs": {"depth": 2, "seq_len": 64}, "corpus": "shakespeare",
                                 "optimizer": "adam", "lr": 0.002}
    note = law_task_note(law, "charlm", {"seq_len": 64})      # charlm's default depth is 10
    assert note.startswith("the step law's runs used depth=2; this model has depth=10")
    assert law_task_note(law, "charlm", {"depth": 2, "seq_len": 64}) is None
    assert law_fields(law, "charlm", 1.0, {"depth": 2, "seq_len": 150})["steps_law_task_note"].startswith(
        "the step law's runs used seq_len=64; this model has seq_len=150")
    # a law file from before measured_task (the synthetic fixture) says nothing
    assert law_task_note(load_law(LAW_PATH), "charlm", {}) is None
