"""Step measurements: tasks and splits, tiny real training runs, the resumable CSV sweep, the CLI."""
import csv
import json
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from perfmodel.architectures import build_graph
from perfmodel.errors import PerfmodelError
from perfmodel.steps import sweep
from perfmodel.steps.data import UNK, load_task, markov_tokens
from perfmodel.steps.fit import REQUIRED
from perfmodel.steps.train import train

LM = {"seq_len": 16, "depth": 2, "val_size": 800}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_markov_source_prefix_and_determinism():
    a = markov_tokens(3000, 16, 3, 2, 0.05, teacher_seed=0, stream_seed=5)
    assert (markov_tokens(1000, 16, 3, 2, 0.05, 0, 5) == a[:1000]).all()   # size D is a prefix of any larger D
    assert not (markov_tokens(3000, 16, 3, 2, 0.05, 0, 6) == a).all()      # another stream
    assert a.min() >= 0 and a.max() < 16
    # order-1 structure is learnable: a bigram table predicts far better than uniform (log 16 = 2.77 nats)
    counts = np.ones((16, 16))
    np.add.at(counts, (a[:-1], a[1:]), 1)
    bigram_entropy = -np.mean(np.log((counts / counts.sum(1, keepdims=True))[a[:-1], a[1:]]))
    assert bigram_entropy < np.log(16) - 0.2


def test_generated_task_split_fixed_by_seed():
    t1 = load_task("charlm", 4000, seed=1, **LM)
    t1b = load_task("charlm", 8000, seed=1, **LM)
    t2 = load_task("charlm", 4000, seed=2, **LM)
    assert t1.train_x.shape == ((4000 - 1) // 16, 16) and t1.tokens_per_example == 16
    assert torch.equal(t1.train_x, t1b.train_x[:len(t1.train_x)])    # nested training sets
    assert not torch.equal(t1.train_x, t2.train_x)                     # seed draws another sample
    assert torch.equal(t1.val_x, t2.val_x)                             # ... of the same teacher, same val set
    x, y = next(t1.train_batches(8, torch.Generator().manual_seed(0)))
    assert x.shape == (16, 8) and torch.equal(x[1:], y[:-1])           # [seq, batch], targets shifted by one


def test_file_corpus_chars_and_words(tmp_path):
    words = ("the cat sat on the mat and the dog sat on the log " * 200).split()
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(words))
    chars = load_task("charlm", 3000, seed=0, corpus=path, **LM)
    assert chars.info["vocab"] == len(set(path.read_text()))
    assert torch.equal(chars.train_x, load_task("charlm", 3000, seed=0, corpus=path, **LM).train_x)
    wl = load_task("wordlm", 1000, seed=0, corpus=path, seq_len=16, vocab=4)
    assert wl.info["vocab"] == 4                                       # top 3 words + <unk>
    # "the" (8/13 of words... ) "sat", "on" kept; cat, mat, and, dog, log -> <unk> (id 3)
    unk_share = (wl.train_x == 3).float().mean().item()
    assert unk_share == pytest.approx(5 / 13, abs=0.03) and UNK == "<unk>"
    with pytest.raises(PerfmodelError, match="exceeds the .* training tokens"):
        load_task("charlm", 10 ** 7, seed=0, corpus=path, **LM)


def test_mlp_teacher_student_task():
    task = load_task("mlp", 500, seed=0, depth=2)
    model = task.make_model(16)
    # parameter count agrees with the analytic architecture builder
    assert sum(p.numel() for p in model.parameters()) == build_graph("mlp", 16, input_dim=50, classes=1, depth=2).params
    x, y = next(task.train_batches(32, torch.Generator().manual_seed(0)))
    assert x.shape == (32, 50) and y.shape == (32,)
    torch.testing.assert_close(task.loss(model, x, y), ((model(x) - y) ** 2).mean())
    assert load_task("mlp", 500, seed=0, input_dim=10).train_x.shape == (500, 10)  # teacher and student
    with pytest.raises(PerfmodelError, match="classes=1"):
        load_task("mlp", 500, seed=0, classes=3)


@pytest.mark.parametrize("model, knobs, size", [
    ("mlp", {"depth": 2}, 600), ("charlm", LM, 3000),
    ("wordlm", {"seq_len": 8, "vocab": 100, "val_size": 400}, 2000)])
def test_tiny_real_run_produces_a_row(model, knobs, size):
    spec = {"model": model, "width": 16, "dataset_size": size, "batch": 16, "seed": 0, "optimizer": "adam",
            "lr": 3e-3, "max_epochs": 2, "eval_every": 4, "patience": 3, "corpus": "",
            "knobs": json.dumps(knobs, sort_keys=True)}
    row = sweep.run_one(spec, progress=False, grad_probe=16)
    assert set(REQUIRED) <= set(row) and tuple(row) == sweep.COLUMNS
    assert row["params"] == sum(p.numel() for p in load_task(model, size, **knobs).make_model(16).parameters())
    assert 0 <= row["steps_to_converge"] <= row["steps_to_min"] <= row["steps"]
    assert row["min_val_loss"] < row["init_val_loss"] and 0 < row["epochs"] <= 2
    assert row["capped"] == (row["stop_reason"] == "max_epochs")
    curve, stats = json.loads(row["val_curve"]), json.loads(row["grad_stats"])
    assert curve[0][0] == 0 and min(v for _, v in curve) == pytest.approx(row["min_val_loss"], rel=1e-5)
    assert [g["step"] for g in stats][:3] == [0, 4, 8] and all(g["n"] == 16 for g in stats)  # evals 1, 2, 4, ...


def test_callback_after_every_step():
    task = load_task("mlp", 256, seed=0, depth=2)
    seen = []
    r = train(task, 8, 32, 1e-3, max_epochs=1, eval_every=100, patience=2, progress=False,
              grad_probe=0, callback=lambda step, model, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == list(range(1, 9)) == list(range(1, r["steps"] + 1))
    with pytest.raises(PerfmodelError, match="larger than the"):
        train(task, 8, 1024, 1e-3, progress=False)


# ---------------------------------------------------------------- the sweep

def _config(**kw):
    return sweep.SweepConfig.with_defaults("mlp", widths=[8, 16], data_sizes=[256, 512], seeds=1,
                                           max_epochs=1, eval_every=4, patience=2, grad_probe=8, **kw)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(spec, progress=True, grad_probe=64):
        if len(calls) == 2 and not any(c.get("resumed") for c in calls):
            raise KeyboardInterrupt  # the sweep dies after two rows
        calls.append(dict(spec))
        return {c: spec.get(c, 1) for c in sweep.COLUMNS}

    monkeypatch.setattr(sweep, "run_one", fake_run_one)
    out = tmp_path / "runs.csv"
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(_config(), out, progress=False)
    assert len(_rows(out)) == 2
    with out.open("a") as f:
        f.write("mlp,16,1,51")  # a row cut short mid-write
    calls.append({"resumed": True})
    counts = sweep.run_sweep(_config(), out, progress=False)
    assert counts == {"done": 2, "skipped": 2}
    keys = [(c["width"], c["dataset_size"]) for c in calls if "width" in c]
    assert len(keys) == len(set(keys)) == 4                        # no run computed twice
    rows = _rows(out)
    assert sorted((int(r["width"]), int(r["dataset_size"])) for r in rows) == [(8, 256), (8, 512), (16, 256), (16, 512)]
    assert sweep.run_sweep(_config(), out, progress=False) == {"done": 0, "skipped": 4}
    # other settings are another sweep: refused before any run, the file untouched
    before = out.read_bytes()
    with pytest.raises(PerfmodelError, match=r"other settings \(lr='0.002', this sweep lr=0.01; data row 1\)"):
        sweep.run_sweep(_config(lr=1e-2), out, progress=False)
    assert out.read_bytes() == before


def test_sweep_refuses_another_models_csv_and_leaves_no_stub(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_one", lambda spec, progress=True, grad_probe=64:
                        {c: spec.get(c, 1) for c in sweep.COLUMNS})
    out = tmp_path / "runs.csv"
    sweep.run_sweep(_config(), out, progress=False)
    other = sweep.SweepConfig.with_defaults("charlm", widths=[8], data_sizes=[2000])
    before = out.read_bytes()
    with pytest.raises(PerfmodelError, match=r"holds mlp runs \(data row 1\), not charlm"):
        sweep.run_sweep(other, out, progress=False)
    assert out.read_bytes() == before
    # a batch larger than the data fails before any file exists
    stub = tmp_path / "new.csv"
    with pytest.raises(PerfmodelError, match=r"batch 4096 exceeds the"):
        sweep.run_sweep(_config(batches=[4096]), stub, progress=False)
    assert not stub.exists()


def test_capped_warning_names_the_share_and_a_cap(tmp_path, monkeypatch):
    # 3 of 4 runs capped (75 % > 25 %): one warning line with a suggested --max-epochs
    def fake(spec, progress=True, grad_probe=64):
        row = {c: spec.get(c, 1) for c in sweep.COLUMNS}
        row.update(params=spec["width"] ** 2, steps_to_min=100, steps_to_converge=90, steps_per_epoch=10,
                   capped=spec["width"] != 16 or spec["dataset_size"] != 512)
        return row
    monkeypatch.setattr(sweep, "run_one", fake)
    out = tmp_path / "runs.csv"
    cfg = _config()
    sweep.run_sweep(cfg, out, progress=False)
    warn = sweep.capped_warning(cfg, out)
    assert warn.startswith("warning: 3 of 4 runs (75%) hit the --max-epochs") and "would have sufficed" in warn
    # 4 runs are too few to fit the 3-parameter power law, so the suggestion is twice the cap,
    # 2 x 1 epoch = 2, rounded up to a multiple of 10
    assert "--max-epochs 1 cap" in warn and warn.endswith("--max-epochs 10 would have sufficed by the fitted law")


def test_sweep_in_two_worker_processes(tmp_path):
    out = tmp_path / "runs.csv"
    counts = sweep.run_sweep(_config(), out, jobs=2, progress=False)
    assert counts == {"done": 4, "skipped": 0}
    assert all(float(r["min_val_loss"]) > 0 for r in _rows(out))


def test_ray_backend(tmp_path, monkeypatch):
    out = tmp_path / "runs.csv"
    monkeypatch.setitem(sys.modules, "ray", None)  # not installed
    with pytest.raises(PerfmodelError, match=r"--ray-address needs Ray.*pip install"):
        sweep.run_sweep(_config(), out, ray_address="auto", progress=False)

    fake = types.SimpleNamespace(address=None)
    fake.init = lambda address=None, **kw: setattr(fake, "address", address)
    fake.remote = lambda **kw: (lambda fn: types.SimpleNamespace(remote=fn))  # "refs" are the results
    fake.wait = lambda pending, num_returns=1: (pending[:1], pending[1:])
    fake.get = lambda ref: ref
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(sweep, "run_one", lambda spec, progress, grad_probe: {c: spec.get(c, 1) for c in sweep.COLUMNS})
    assert sweep.run_sweep(_config(), out, ray_address="ray://head:10001", progress=False)["done"] == 4
    assert fake.address == "ray://head:10001" and len(_rows(out)) == 4


def test_cli_measure(tmp_path):
    from perfmodel.cli import main
    out = tmp_path / "runs.csv"
    args = ["steps", "measure", "--model", "mlp", "--widths", "8..16", "--data-sizes", "256", "--max-epochs", "1",
            "--eval-every", "4", "--grad-probe", "8", "--no-progress", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "2 runs measured" in res.output and [r["width"] for r in _rows(out)] == ["16", "8"]
    assert "0 runs measured, 2 already" in CliRunner().invoke(main, args).output
    bad = CliRunner().invoke(main, args[:-2] + ["--set", "colour=3", "-o", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and "error: unknown option 'colour'" in bad.output
    bad = CliRunner().invoke(main, ["steps", "measure", "--model", "mlp", "--widths", "8..x", "-o", str(out)])
    assert bad.exit_code == 2 and "widths" in bad.output
