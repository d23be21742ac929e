"""Kernel tables in the DeepBench layout: reading, checking, predicting, importing.

Reference rows in tests/data/ are copied from Baidu DeepBench's published
V100 results (https://github.com/baidu-research/DeepBench, results/train).
"""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from perfmodel.calibrate.deepbench import profile_from_csv

from perfmodel.cli import main
from perfmodel.errors import PerfmodelError
from perfmodel.hardware import load, profile_from_dict
from perfmodel.kernel_check import mape, predict_rows, read_kernel_csv, row_op, summary

DATA = Path(__file__).parent / "data"
GEMM, RNN, CONV = (DATA / f"deepbench_{k}_v100_sample.csv" for k in ("gemm", "rnn", "conv"))


def test_kind_follows_from_columns():
    assert [read_kernel_csv(p).kind for p in (GEMM, RNN, CONV)] == ["gemm", "rnn", "conv"]


def test_missing_columns_are_named(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("gpu,precision,M,N,transA,transB,time_ms\nV100,fp32,1,2,N,N,0.1\n")
    with pytest.raises(PerfmodelError, match=r"closest is gemm, missing columns: K"):
        read_kernel_csv(f)


def test_non_numeric_value_names_line_and_column(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("gpu,precision,M,N,K,transA,transB,time_ms\nV100,fp32,1,2,3,N,N,0.1\nV100,fp32,1,x,3,N,N,0.1\n")
    with pytest.raises(PerfmodelError, match=r"line 3, column 'N': 'x' is not allowed; it must be an integer >= 1"):
        read_kernel_csv(f)


def test_gemm_row_flops_follow_deepbench_convention():
    # DeepBench README: a GEMM C[MxN] = A[MxK] B[KxN] performs 2*M*N*K floating point operations.
    row = read_kernel_csv(GEMM).rows[0]
    op = row_op("gemm", row, "fwd")
    assert op.flops == 2 * row["M"] * row["N"] * row["K"]


def test_column_major_rows_become_row_major_ops():
    # cuBLAS (DeepBench) is column-major; torch runs row-major C = op(a) op(b) as cuBLAS C^T = op(b)^T op(a)^T,
    # so the row (M=2560, N=64, K=2560, T, N) is the IR GEMM m=64, n=2560, k=2560, trans_a=False, trans_b=True
    # -- the shape of a batch-64 RNN step x @ W^T, where the IR's RNN GEMMs look it up.
    row = read_kernel_csv(GEMM).rows[2]
    op = row_op("gemm", row, "fwd")
    assert (op.dims, op.attrs) == ({"m": 64, "n": 2560, "k": 2560}, {"trans_a": False, "trans_b": True})
    point = profile_from_csv([GEMM], load("V100-SXM2"))["calibration"]["gemm"][2]
    assert (point["m"], point["n"], point["trans_a"], point["trans_b"]) == (64, 2560, False, True)


def test_timings_faster_than_any_peak_are_listed_not_predicted(tmp_path):
    # P100 fp16 GRU bwd_w_ms as published: ~1.36 ms at h2816, b32, t1500.  With no input weight
    # (CUDNN_SKIP_INPUT) the weight gradient is one GEMM of 2 * 3h * h * (b*t) FLOPs = 2.28e12 FLOPs
    # -> 1.7e15 FLOP/s, 80x the P100's fp16 peak.
    f = tmp_path / "rnn.csv"
    f.write_text("gpu,precision,cell,hidden,batch,timesteps,fwd_ms,bwd_in_ms,bwd_w_ms\n"
                 "P100,fp16,gru,2816,32,1500,600.0,700.0,1.3573\n")
    h, b, t = 2816, 32, 1500
    assert row_op("rnn", read_kernel_csv(f).rows[0], "bwd_weight").flops == 2 * 3 * h * h * b * t
    preds, skipped = predict_rows(read_kernel_csv(f), load("P100-SXM2"))
    assert [p["phase"] for p in preds] == ["fwd", "bwd_data"]
    assert [s["phase"] for s in skipped] == ["bwd_weight"] and "not a plausible timing" in skipped[0]["reason"]


def test_deepbench_rnn_rows_have_no_input_gemm(tmp_path):
    # DeepBench's code/nvidia/rnn_bench.cu builds its RNN descriptor with CUDNN_SKIP_INPUT: the input
    # (of the hidden size) is added to the gates as it is.  An LSTM layer forward is then, per step,
    # one recurrent GEMM [b x h] @ [h x 4h] (2*b*h*4h FLOPs) plus 18 pointwise FLOPs per hidden unit:
    # h512 b16 t25 -> 25 * (2*16*512*2048 + 18*16*512) = 25 * (33,554,432 + 147,456) = 842,547,200 FLOPs.
    f = tmp_path / "rnn.csv"
    f.write_text("gpu,precision,cell,hidden,batch,timesteps,fwd_ms,bwd_in_ms,bwd_w_ms\n"
                 "V100,fp32,lstm,512,16,25,1.095,0.937,0.165\n")
    row = read_kernel_csv(f).rows[0]
    assert row_op("rnn", row, "fwd").flops == 842_547_200
    # the weight gradient: one GEMM [h x t*b] @ [t*b x 4h] over all steps = 2*512*400*2048 FLOPs
    assert row_op("rnn", row, "bwd_weight").flops == 2 * 512 * 400 * 2048
    point = profile_from_csv([f], load("V100-SXM2"))["calibration"]["rnn"][0]
    assert point["input_mode"] == "skip"


def test_unknown_rnn_input_mode_is_a_profile_error():
    d = profile_from_csv([RNN], load("V100-SXM2"))
    d["calibration"]["rnn"][0]["input_mode"] = "dense"
    with pytest.raises(PerfmodelError, match=r"input_mode' must be one of linear, skip, got 'dense'"):
        profile_from_dict(d, "bad.json")


def test_every_measured_phase_is_predicted_or_listed():
    hw = load("V100-SXM2")
    table = read_kernel_csv(CONV)
    preds, skipped = predict_rows(table, hw)
    # 5 rows x 3 phases; rows 0 and 2 hold a tensor width (341, 480) in bwd_w_ms -> both backward phases listed
    assert len(preds) + len(skipped) == 15
    assert {(s["row"], s["phase"]) for s in skipped} == {(0, "bwd_data"), (0, "bwd_weight"),
                                                          (2, "bwd_data"), (2, "bwd_weight")}
    assert all(p["predicted_s"] > 0 for p in preds)
    m = mape(preds)["conv"]
    assert m == pytest.approx(sum(abs(p["error"]) for p in preds) / len(preds))  # a fraction, as validate's


def test_summary_per_kind_dtype_phase():
    # fp32 fwd errors +10%, -30%, +20% -> MAPE 0.20, median +0.10; fp16 fwd one row at -0.50 (fractions)
    preds = [{"kind": "rnn", "dtype": "fp32", "phase": "fwd", "error": e} for e in (0.1, -0.3, 0.2)]
    preds.append({"kind": "rnn", "dtype": "fp16", "phase": "fwd", "error": -0.5})
    out = summary(preds)
    assert [(g["dtype"], g["rows"]) for g in out] == [("fp16", 1), ("fp32", 3)]
    assert out[1]["mape"] == pytest.approx(0.20) and out[1]["median_error"] == pytest.approx(0.10)
    assert out[0]["mape"] == pytest.approx(0.50) and out[0]["median_error"] == pytest.approx(-0.50)
    # without the bias: measured/predicted = 1/1.1, 1/0.7, 1/1.2, median 1/1.1; scaled errors
    # 1.1/1.1 - 1 = 0, 0.7/1.1 - 1 = -0.364, 1.2/1.1 - 1 = +0.091 -> MAPE 0.1515; one row -> 0
    assert out[1]["debiased_mape"] == pytest.approx((0 + 0.4 / 1.1 + 0.1 / 1.1) / 3)
    assert out[0]["debiased_mape"] == pytest.approx(0.0)


def test_rows_of_other_gpus_are_not_used():
    assert predict_rows(read_kernel_csv(GEMM), load("P100-SXM2")) == ([], [])


def test_import_makes_a_valid_calibrated_profile(tmp_path):
    d = profile_from_csv([GEMM, RNN], load("V100-SXM2"))
    prof = profile_from_dict(json.loads(json.dumps(d)), "imported")
    cal = prof.calibration
    assert len(cal["gemm"]) == 20 and len(cal["rnn"]) == 7
    first = read_kernel_csv(GEMM).rows[0]
    assert cal["gemm"][0]["time_s"] == pytest.approx(first["time_ms"] * 1e-3)
    assert cal["rnn"][0]["bwd_s"] > cal["rnn"][0]["fwd_s"] * 0.1


def test_import_without_matching_gpu_fails_clearly():
    with pytest.raises(PerfmodelError, match=r"GPUs found: V100"):
        profile_from_csv([GEMM], load("H100-SXM5"))


def test_cli_json_shape():
    r = CliRunner().invoke(main, ["kernels", str(GEMM), str(RNN), str(CONV), "--hardware", "V100-SXM2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["mape"]) == {"gemm", "rnn", "conv"}
    assert {(g["kind"], g["phase"]) for g in out["by_phase"]} >= {("gemm", "fwd"), ("rnn", "bwd_weight")}
    assert len(out["unmodelled"]) == 4
    assert len(out["rows"]) == 20 + 7 * 3 + 11
