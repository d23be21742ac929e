"""Bad input ends before any work with exit 2 and one line naming the value and what is allowed,
and touches no file (docs/bad_input.md lists each case with its behaviour before and after)."""
import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
RUNS = ROOT / "perfmodel" / "steps" / "default_laws" / "charlm_runs.csv"
GEMM_HEAD = "gpu,precision,M,N,K,transA,transB,time_ms\n"


def _profile(tmp, name, change):
    d = json.loads((ROOT / "profiles" / "V100-SXM2.json").read_text())
    change(d)
    (tmp / name).write_text(json.dumps(d))


def _threads(d):
    d["calibration"] = {"provenance": {"kind": "gpu", "device": "x", "threads": -3}}


def _runs_with(tmp, name, column, value):
    lines = RUNS.read_text().splitlines(keepends=True)
    cols = lines[0].rstrip("\n").split(",")
    first = lines[1].split(",")
    first[cols.index(column)] = value        # params and dataset_size come before the quoted columns
    (tmp / name).write_text(lines[0] + ",".join(first) + "".join(lines[2:]))


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The inputs of the cases, in a folder of their own; PERFMODEL_HOME inside it."""
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / ".home"))
    monkeypatch.chdir(tmp_path)
    shutil.copy(RUNS, tmp_path / "runs.csv")
    shutil.copy(RUNS, tmp_path / "charlm_runs.csv")
    shutil.copy(DATA / "deepbench_gemm_v100_sample.csv", tmp_path / "gemm.csv")
    shutil.copy(ROOT / "profiles" / "V100-SXM2.json", tmp_path / "p.json")
    _profile(tmp_path, "sm05.json", lambda d: d.update(sm_count=0.5))
    _profile(tmp_path, "tile.json", lambda d: d["gemm_tile"].update(m=0.001))
    _profile(tmp_path, "dpn.json", lambda d: d.update(devices_per_node=2.5))
    _profile(tmp_path, "thr.json", _threads)
    (tmp_path / "k_m0.csv").write_text(GEMM_HEAD + "V100,fp32,0,16,1760,N,N,0.038\n")
    (tmp_path / "k_t0.csv").write_text(GEMM_HEAD + "V100,fp32,1760,16,1760,N,N,0\n")
    (tmp_path / "latin1.csv").write_bytes((GEMM_HEAD + "V100,fp32,1760,16,1760,N,N,0.038 caf\xe9\n").encode("latin-1"))
    _runs_with(tmp_path, "runs_p0.csv", "params", "-5")
    _runs_with(tmp_path, "runs_d0.csv", "dataset_size", "0")
    return tmp_path


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_measuring(monkeypatch):
    """Measuring, training or timing steps before the refusal fails the test at once (instead of taking minutes)."""
    def refuse(*a, **k):
        raise AssertionError("work started before the bad input was refused")
    from perfmodel.calibrate import run

    from perfmodel.diagnostics import run as diagnostics_run
    monkeypatch.setattr(run, "calibrate", refuse)
    monkeypatch.setattr(diagnostics_run, "_diagnose", refuse)
    import perfmodel.validate as validate
    monkeypatch.setattr(validate, "machine_drift", refuse)


#: marks per case: L3 shows the refusal only where Ray is missing
MARKS = {"L3": pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")}
MEASURE = "steps measure --model mlp --widths 8 --no-progress"

# id, command line (split on spaces; '' stands for an empty argument), the one line expected (regex)
CASES = [
    ("D1", "steps fit runs.csv -o runs.csv", r"law path 'runs.csv' is also an input"),
    ("D2", "calibrate --from-csv gemm.csv --base V100-SXM2 -o gemm.csv", r"profile path 'gemm.csv' is also an input"),
    ("D3", "report --model mlp --widths 64 --hardware p.json -o p.json", r"report path 'p.json' is also an input"),
    ("D4", f"{MEASURE} --data-sizes 64 -o charlm_runs.csv", r"holds charlm runs .* not mlp"),
    ("O1", "plan --model charlm --widths 256,4000000000 --dataset-size 1e8 --devices 8",
     r"width 4000000000 is too large: .* parameters, more than the 1e\+15 allowed"),
    # the MLP's 3 hidden layers alone hold 3 x (4e9)^2 = 4.8e19 parameters
    ("O2", "sweep --model mlp --widths 2000000000,4000000000", r"width 4000000000 is too large: 4.8e\+19 parameters"),
    ("O3", "predict --model charlm --width 400000000000", r"width 400000000000 is too large"),
    # a hidden layer's GEMM: 2 x batch x width x width = 2 x 1e8 x 1e6 x 1e6 = 2e20 FLOPs > 2**62
    ("O4", "sweep --model mlp --widths 1000000 --batches 100000000",
     r"op 'layers/1/linear' counts 2e\+20 FLOPs per step, more than the 2\*\*62"),
    ("W1", "calibrate --cpu --quick --no-progress -o gemm.csv/local.json", r"'gemm.csv' is a file, not a folder"),
    ("W2", "steps fit runs.csv -o gemm.csv/law.json", r"'gemm.csv' is a file, not a folder"),
    ("W3", "report --model mlp --widths 64 -o gemm.csv/r.html", r"'gemm.csv' is a file, not a folder"),
    ("W4", "demo --model mlp --width 64 --report gemm.csv/demo.html", r"'gemm.csv' is a file, not a folder"),
    ("W5", "diagnose --model mlp --widths 16 --seeds 1 --steps 5 --no-progress -o gemm.csv/d.csv",
     r"rows CSV path 'gemm.csv/d.csv' is not allowed: 'gemm.csv' is a file"),
    ("W6", "calibrate --cpu --quick --no-progress -o ''", r"profile path '' is empty"),
    ("W7", "calibrate --from-csv gemm.csv --base V100-SXM2 -o ''", r"profile path '' is empty"),
    ("W8", "report --model mlp --widths 64 -o ''", r"report path '' is empty"),
    ("W9", "diagnose --model mlp --widths 16 --seeds 1 --steps 5 --no-progress -o ''", r"rows CSV path '' is empty"),
    ("W10", "steps fit runs.csv -o ''", r"law path '' is empty"),
    ("T1", "steps fit runs_p0.csv", r"column params .* has -5 in data row 1; params must be positive"),
    ("T2", "steps fit runs_d0.csv", r"column dataset_size .* has 0 in data row 1; dataset_size must be positive"),
    ("T3", "kernels k_m0.csv --hardware V100-SXM2",
     r"line 2, column 'M': '0' is not allowed; it must be an integer >= 1"),
    ("T4", "kernels k_t0.csv --hardware V100-SXM2", r"column 'time_ms': '0' is not allowed; it must be a time > 0"),
    ("T5", "kernels latin1.csv --hardware V100-SXM2", r"kernel table 'latin1.csv' is not UTF-8 text"),
    ("T6", "calibrate --from-csv latin1.csv --base V100-SXM2 -o out.json", r"'latin1.csv' is not UTF-8 text"),
    ("T7", "report --model charlm --widths 64 --runs latin1.csv -o r.html", r"runs file 'latin1.csv' is not UTF-8"),
    ("T8", "steps fit latin1.csv", r"runs file 'latin1.csv' is not UTF-8 text"),
    ("T9", "predict --model mlp --width 64 --hardware thr.json",
     r"key 'calibration.provenance.threads' must be an integer >= 1, got -3"),
    ("T10", "validate --model mlp --widths 16 --hardware thr.json",
     r"key 'calibration.provenance.threads' must be an integer >= 1, got -3"),
    ("N1", "predict --model mlp --width 64 --hardware sm05.json", r"key 'sm_count' must be an integer >= 1, got 0.5"),
    ("N2", "predict --model mlp --width 64 --hardware tile.json",
     r"key 'gemm_tile.m' must be an integer >= 1, got 0.001"),
    ("N3", "predict --model mlp --width 64 --hardware dpn.json",
     r"'devices_per_node' must be an integer >= 1, got 2.5"),
    ("N4", "predict --model mlp --width 64 --dp 2 --devices 4",
     r"layout dp=2 tp=1 pp=1 m=1 runs on dp\*tp\*pp = 2 devices, not --devices 4"),
    ("N5", "predict --model mlp --width 64 --json --csv", r"--json and --csv are not allowed together"),
    ("N6", "predict --model mlp --width 64 --batch 4 --set batch=8", r"--batch 4 and --set batch=8 both give batch"),
    ("N7", "calibrate --cpu --device cuda:1 --quick --no-progress -o out.json",
     r"--device 'cuda:1' is not allowed with --cpu"),
    ("N8", "validate --model mlp --widths 16 --hardware H100-SXM5",
     r"profile 'H100-SXM5' describes a GPU but the steps run on --device cpu: pass --device cuda"),
    ("N10", "sweep --model mlp --widths 64 --batch 4 --batches 8", r"--batch 4 and --batches 8 both give the batch"),
    ("L1", f"{MEASURE} --data-sizes 1 -o new.csv", r"batch 32 exceeds the 1 training examples"),
    ("L2", f"{MEASURE} --data-sizes 64 --batch 128 -o new.csv", r"batch 128 exceeds the 64 training examples"),
    ("L3", f"{MEASURE} --data-sizes 64 --ray-address local -o new.csv", r"--ray-address needs Ray"),
    ("S1", "sweep --model mlp --widths 0", r"width 0 is not allowed; widths must be positive integers"),
    ("S2", "sweep --model mlp --widths 64 --batches -1", r"batch -1 is not allowed; batches must be positive integers"),
    ("S4", "demo --dataset-size -1 --report ''", r"dataset size -1.0 is not allowed"),
    ("I2", "calibrate --from-csv gemm.csv --base P100-SXM2 -o out.json",
     r"no rows for GPU 'P100-SXM2' .* GPUs found: V100 \(use --gpu-name NAME or another --base\)"),
]


def _args(line: str) -> list[str]:
    return ["" if a == "''" else a for a in line.split()]


@pytest.mark.parametrize("case,line,expected", [pytest.param(*c, id=c[0], marks=MARKS.get(c[0], ())) for c in CASES])
def test_refused_in_one_line_before_any_work(files, no_measuring, case, line, expected):
    before = _digest(files)
    res = CliRunner().invoke(main, _args(line))
    out = res.output.strip().splitlines()
    assert res.exit_code == 2, (case, res.exit_code, res.output[-600:])
    assert len(out) == 1 and out[0].startswith("error: "), (case, res.output)
    assert re.search(expected, out[0]), (case, out[0])
    assert _digest(files) == before, f"{case} touched a file"


def test_plan_searches_the_divisors_of_the_allowed_batches():
    """--batches 3 on 8 devices: 3 = dp 1 x 3 micro-batches x 1, or 1 x 1 x 3 (before: 'no valid layout')."""
    res = CliRunner().invoke(main, ["plan", "--model", "charlm", "--widths", "256", "--dataset-size", "1e8",
                                    "--devices", "8", "--batches", "3", "--json"])
    assert res.exit_code == 0, res.output
    best = json.loads(res.stdout)["fastest"]
    assert best["batch"] == 3 and best["dp"] * best["m"] * best["micro_batch"] == 3


def test_gpu_name_picks_the_csv_rows(files):
    res = CliRunner().invoke(main, ["calibrate", "--from-csv", "gemm.csv", "--base", "P100-SXM2", "--gpu-name", "V100",
                                    "-o", "out.json"])
    assert res.exit_code == 0, res.output
    prof = json.loads((files / "out.json").read_text())
    # the 20 V100 rows, less those faster than the P100's peak allows (implausible on the base's device)
    assert prof["calibration"]["provenance"]["device"] == "V100" and 0 < len(prof["calibration"]["gemm"]) <= 20


def test_kernels_json_gives_fractions_as_validate_does():
    res = CliRunner().invoke(main, ["kernels", str(DATA / "deepbench_gemm_v100_sample.csv"), "--hardware",
                                    "V100-SXM2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = out["rows"]
    # MAPE = mean |predicted - measured| / measured, a fraction like validate's "mape"
    assert out["mape"]["gemm"] == pytest.approx(sum(abs(r["error"]) for r in rows) / len(rows))
    assert all(g["mape"] == pytest.approx(sum(abs(r["error"]) for r in rows if r["dtype"] == g["dtype"]) / g["rows"])
               for g in out["by_phase"])


def test_ctrl_c_exits_130_with_one_line(monkeypatch):
    import perfmodel.cli.predict as cli_predict

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_predict, "run_predict", interrupted)
    res = CliRunner().invoke(main, ["predict", "--model", "mlp", "--width", "64"])
    assert res.exit_code == 130 and res.output.strip() == "interrupted"


def test_sweep_csv_streams_the_same_rows_as_the_table():
    """The streamed CSV (chunks of configurations) holds the rows the unstreamed sweep gives, in order."""
    from perfmodel import hardware
    from perfmodel.grid import COLUMNS, csv_chunks, rows, sweep, sweep_chunks
    hws = [hardware.load("H100-SXM5"), hardware.load("cpu-generic")]
    text = "".join(csv_chunks(sweep_chunks("mlp", [16, 64, 256], hws, [1, 2, 3, 4, 5], chunk=4)))
    lines = text.splitlines()
    table = rows(sweep("mlp", [16, 64, 256], hws, [1, 2, 3, 4, 5]))
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 1 + len(table) == 1 + 2 * 3 * 5
    assert lines[1:] == [",".join(str(r[c]) for c in COLUMNS) for r in table]


def test_int64_grids_are_refused_not_wrapped():
    """The vectorized path counts in int64: a width whose parameters pass 1e15 is refused, never negative."""
    from perfmodel import hardware
    from perfmodel.errors import PerfmodelError
    from perfmodel.grid import sweep
    cols = sweep("mlp", [2**20], [hardware.load("H100-SXM5")])     # ~3.3e12 parameters: allowed, positive
    assert cols["params"][0] > 0 and cols["time_per_step_s"][0] > 0
    with pytest.raises(PerfmodelError, match=r"width 4000000000 is too large"):
        sweep("mlp", [64, 4_000_000_000], [hardware.load("H100-SXM5")])
