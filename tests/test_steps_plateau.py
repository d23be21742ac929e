"""Early stopping on a plateau: the plateau loss of a task, and the stopping rule that waits longer there."""
import csv
import json
import math
from pathlib import Path

import pytest
import torch

from perfmodel.steps.data import Task, load_task
from perfmodel.steps.train import PLATEAU_FACTOR, PLATEAU_MARGIN, stop_reason

LAWS = Path(__file__).resolve().parents[1] / "perfmodel" / "steps" / "default_laws"


def test_stop_reason_arithmetic():
    # no plateau loss known: plain patience
    assert stop_reason(11, 5.0, 12) is None
    assert stop_reason(12, 5.0, 12) == "patience"
    # plateau 5.36 -> a minimum at or above (1 - 0.02) x 5.36 = 5.2528 is still on it
    assert PLATEAU_MARGIN == 0.02 and PLATEAU_FACTOR == 4
    assert stop_reason(12, 5.37, 12, plateau=5.36) is None
    assert stop_reason(47, 5.253, 12, plateau=5.36) is None
    assert stop_reason(48, 5.37, 12, plateau=5.36) == "plateau"    # 4 x 12 evaluations
    # below it the run has learnt from its inputs: plain patience again
    assert stop_reason(12, 5.25, 12, plateau=5.36) == "patience"
    assert stop_reason(12, 4.66, 12, plateau=5.36) == "patience"


def _lm_task(train_tokens, val_tokens, vocab):
    tr, va = torch.tensor([train_tokens]), torch.tensor([val_tokens])
    return Task("wordlm", len(train_tokens), tr, tr, va, va, {}, len(train_tokens), 1, info={"vocab": vocab})


def test_unigram_plateau_loss_arithmetic():
    # training targets 0, 0, 1 over a vocabulary of 3: add-1/2 counts 2.5, 1.5, 0.5 of 4.5
    # validation targets 0, 2: -(log(2.5/4.5) + log(0.5/4.5)) / 2 = (0.5878 + 2.1972) / 2 = 1.3925
    task = _lm_task([0, 0, 1], [0, 2], 3)
    assert task.plateau_loss() == pytest.approx(-(math.log(2.5 / 4.5) + math.log(0.5 / 4.5)) / 2)
    assert task.plateau_loss() == pytest.approx(1.3925, abs=1e-4)


def test_mlp_plateau_is_the_variance_about_the_training_mean():
    t = load_task("mlp", 64, seed=0)
    expected = float(((t.val_y - t.train_y.mean()) ** 2).mean())
    assert t.plateau_loss() == pytest.approx(expected)
    assert 0.5 < t.plateau_loss() < 2.0        # unit-variance teacher plus noise


def test_the_shipped_plateau_run_would_have_gone_on():
    """wordlm width 16, D 150k, seed 0 stopped by patience at 1,125 steps at 5.3702 nats, on the
    unigram level of its split (5.3602); seed 1 went on to 4.66 at 15,975 steps.  Replayed through
    the rule, the recorded curve (to step 1,425, 12 evaluations past the minimum) does not stop it,
    while every run of the same sweep that learnt (minimum below 0.98 x unigram) stops as recorded."""
    rows = list(csv.DictReader(open(LAWS / "wordlm_runs.csv", encoding="utf-8")))
    stuck = next(r for r in rows if (r["width"], r["dataset_size"], r["seed"]) == ("16", "150000", "0"))
    task = load_task("wordlm", 150_000, 0, "shakespeare", seq_len=32, vocab=2000)
    plateau = task.plateau_loss()
    assert plateau == pytest.approx(5.3602, abs=1e-3)

    def replay(curve, patience):
        best, since = math.inf, 0
        for _step, loss in curve:
            best, since = (loss, 0) if loss < best else (best, since + 1)
            why = stop_reason(since, best, patience, plateau)
            if why:
                return why
        return None

    assert replay(json.loads(stuck["val_curve"]), int(stuck["patience"])) is None
    learnt = [r for r in rows if r["dataset_size"] == "150000" and r["seed"] == "0" and r is not stuck]
    assert learnt and all(float(r["min_val_loss"]) < 0.98 * plateau for r in learnt)
    assert all(replay(json.loads(r["val_curve"]), int(r["patience"])) == "patience" for r in learnt)
