"""The op IR, the roofline rule, wave quantization, memory and the predict/sweep CLI.

Expected values are written as the arithmetic that produces them.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from perfmodel.architectures import build_graph
from perfmodel.cli import main
from perfmodel.cli.options import parse_int_list
from perfmodel.cost.memory import memory_footprint
from perfmodel.cost.op_time import op_time
from perfmodel.cost.waves import gemm_wave_efficiency
from perfmodel.hardware import load, profile_from_dict
from perfmodel.ops import Op, OpKind, derive_backward
from perfmodel.predict import predict, predict_arrays


def toy_gpu(**over):
    """A round-number GPU: 10 TFLOP/s fp32, 1000 GB/s at 100%, 80 SMs, 128x128 tiles, 5 us launch."""
    d = load("V100-SXM2").to_dict()
    d.update(name="toy", peak_tflops={"fp32": 10.0}, memory_bandwidth_GBps=1000.0, sm_count=80,
             kernel_launch_overhead_us=5.0, efficiency={"gemm_max": 1.0, "memory_max": 1.0, "conv_max": 1.0},
             gemm_tile={"m": 128, "n": 128, "ctas_per_sm": 1})
    d.update(over)
    return profile_from_dict(d, "toy")


def test_gemm_flops_are_two_per_multiply_add_and_backward_is_derived():
    fwd = Op(OpKind.GEMM, "fc", {"m": 32, "n": 256, "k": 128}, attrs={"weight": "b", "trans_b": True})
    assert fwd.flops == 2 * 32 * 256 * 128
    bwd = derive_backward([fwd])
    # dX = dY @ W : [32x256]@[256x128];  dW = X^T @ dY : [128x32]@[32x256]
    assert [(o.phase, o.dims["m"], o.dims["n"], o.dims["k"]) for o in bwd] == \
        [("bwd_data", 32, 128, 256), ("bwd_weight", 128, 256, 32)]
    assert sum(o.flops for o in bwd) == 2 * fwd.flops  # fwd + bwd = 3x forward


def test_first_layer_has_no_input_gradient():
    op = Op(OpKind.GEMM, "fc", {"m": 4, "n": 4, "k": 4}, attrs={"weight": "b", "first_layer": True})
    assert [o.phase for o in derive_backward([op])] == ["bwd_weight"]


def test_dims_hold_sizes_and_attrs_hold_flags():
    fwd = Op(OpKind.GEMM, "fc", {"m": 8, "n": 4, "k": 2}, attrs={"weight": "b", "trans_b": True, "bias": True})
    # dX = dY @ W: [8x4]@[4x2]; dW = X^T @ dY: [2x8]@[8x4].  Both keep the layout and the weight's role;
    # the bias belongs to the forward addmm only (its gradient is a reduction of its own)
    assert [(o.dims, dict(o.attrs)) for o in derive_backward([fwd]) if o.kind == OpKind.GEMM] == [
        ({"m": 8, "n": 2, "k": 4}, {"weight": "b", "trans_b": True}),
        ({"m": 2, "n": 4, "k": 8}, {"weight": "b", "trans_b": True})]
    with pytest.raises(ValueError, match="trans_b belong in attrs, not dims"):
        Op(OpKind.GEMM, "fc", {"m": 1, "n": 1, "k": 1, "trans_b": True})
    with pytest.raises(ValueError, match="unknown conv2d attribute"):
        Op(OpKind.CONV2D, "c", {"n": 1}, attrs={"trans_b": True})
    for model in ("charlm", "wordlm", "speech", "mlp", "transformer", "resnet"):
        for op in build_graph(model, 64).step_ops():
            assert all(v is not None and not isinstance(v, (bool, str)) for v in op.dims.values()), (model, op)


def test_unknown_kind_and_phase_are_rejected():
    with pytest.raises(ValueError, match="unknown op kind 'fft'"):
        Op("fft", "x", {})
    with pytest.raises(ValueError, match="unknown phase 'bwd'"):
        Op(OpKind.COPY, "x", {"numel": 1}, phase="bwd")


def test_roofline_is_max_of_compute_and_memory_plus_launch():
    hw = toy_gpu()
    # 1024^3 GEMM: 64 tiles of 128x128 on 80 SMs -> one wave, 64/80 = 80% of the SMs busy
    op = Op(OpKind.GEMM, "g", {"m": 1024, "n": 1024, "k": 1024})
    t = op_time(op, hw)
    compute = 2 * 1024**3 / (10e12 * 64 / 80)
    memory = 3 * 1024 * 1024 * 4 / 1000e9
    assert float(t.compute_s) == pytest.approx(compute)
    assert float(t.memory_s) == pytest.approx(memory)
    assert float(t.time_s) == pytest.approx(max(compute, memory) + 5e-6)
    assert str(t.bound) == "compute"
    # a copy of 1 MB: 2 MB moved at 1000 GB/s = 2 us, plus 5 us launch -> overhead-bound
    c = op_time(Op(OpKind.COPY, "c", {"numel": 250_000}), hw)
    assert float(c.time_s) == pytest.approx(2e-6 + 5e-6) and str(c.bound) == "overhead"


def test_wave_quantization_arithmetic():
    hw = toy_gpu()
    # 9 x 10 = 90 tiles on 80 slots -> 2 waves: 90 / 160 of the device does work
    assert gemm_wave_efficiency(hw, 9 * 128, 10 * 128) == pytest.approx(90 / 160)
    # a 64-row matrix fills half of each 128-row tile: tile efficiency 0.5, 8 tiles on 80 slots
    assert gemm_wave_efficiency(hw, 64, 8 * 128) == pytest.approx(0.5 * 8 / 80)
    # split-K: 8 tiles, K = 4096 -> split = min(80 // 8, 4096 // 256) = 10 -> 80 tiles, one full wave
    assert gemm_wave_efficiency(hw, 128, 8 * 128, 1, 4096) == pytest.approx(1.0)
    # vectorized over widths
    np.testing.assert_allclose(gemm_wave_efficiency(hw, np.array([1024, 9 * 128]), np.array([1024, 1280])),
                               [64 / 80, 90 / 160])


def test_memory_footprint_adam():
    g = build_graph("mlp", 256, batch=8)
    m = memory_footprint(g, "fp32", "adam")
    p = g.params
    assert (m.weights_bytes, m.gradients_bytes, m.optimizer_bytes) == (4 * p, 4 * p, 2 * 4 * p)
    # fp16 training keeps an fp32 master copy: 2 + 4 bytes of weights per parameter
    assert memory_footprint(g, "fp16", "sgd").weights_bytes == 6 * p


def test_mlp_param_count_by_hand():
    # input 1024 -> 4 x 256 -> 10 classes, each Linear with bias
    p = (1024 * 256 + 256) + 3 * (256 * 256 + 256) + (256 * 10 + 10)
    assert build_graph("mlp", 256).params == p


def test_vectorized_prediction_matches_scalar():
    hw = load("H100-SXM5")
    widths = np.array([64, 300, 4096])
    arr = predict_arrays("charlm", widths, hw)
    for i, w in enumerate(widths):
        p = predict("charlm", int(w), hw)
        assert arr["time_per_step_s"][i] == pytest.approx(p.time_per_step_s, rel=1e-12)
        assert arr["params"][i] == p.params


def test_predict_json_has_the_documented_keys():
    r = CliRunner().invoke(main, ["predict", "--model", "charlm", "--width", "256", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for k in ("model", "width", "params", "flops_per_step", "bytes_per_step", "time_per_step_s",
              "memory_bytes", "fits_in_memory", "breakdown"):
        assert k in out
    assert set(out["breakdown"][0]) >= {"name", "phase", "flops", "bytes", "time_s", "bound"}
    assert out["time_per_step_s"] == pytest.approx(sum(b["time_s"] for b in out["breakdown"]))


@pytest.mark.parametrize("args, message", [
    (["--model", "nope", "--width", "8"], "unknown model 'nope'; allowed: "),
    (["--model", "mlp", "--width", "0"], "0 is not in the range x>=1"),
    (["--model", "mlp", "--width", "1.5"], "'1.5' is not a valid integer"),
    (["--model", "mlp", "--width", "8", "--hardware", "TitanX-Maxwell", "--dtype", "bf16"],
     "dtype 'bf16' is not supported on TitanX-Maxwell; allowed: fp32"),
    (["--model", "mlp", "--width", "8", "--hardware", "nowhere"], "unknown hardware 'nowhere'"),
    (["--model", "mlp", "--width", "8", "--set", "depth=0"], "depth='0' for model 'mlp' must be an integer >= 1"),
    (["--model", "mlp", "--width", "8", "--set", "colour=red"], "unknown option 'colour' for model 'mlp'"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    r = CliRunner().invoke(main, ["predict", *args])
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_int_lists():
    assert parse_int_list("64..512") == [64, 128, 256, 512]
    assert parse_int_list("16,64..128") == [16, 64, 128]
    with pytest.raises(Exception, match="positive integers"):
        parse_int_list("64..x")


def test_sweep_rows_cover_the_grid():
    r = CliRunner().invoke(main, ["sweep", "--model", "mlp", "--widths", "64..256", "--batches", "8,16",
                                  "--hardware", "H100-SXM5,V100-SXM2", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 3 * 2 * 2
    assert {(x["hardware"], x["width"], x["batch"]) for x in rows} == \
        {(h, w, b) for h in ("H100-SXM5", "V100-SXM2") for w in (64, 128, 256) for b in (8, 16)}


def test_predict_path_imports_neither_torch_nor_matplotlib():
    code = ("import sys; from perfmodel.cli import main\n"
            "try: main(['predict','--model','charlm','--width','64'])\n"
            "except SystemExit: pass\n"
            "print('HEAVY', sorted(m for m in ('torch','matplotlib','pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_catalog_commands():
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0 and "charlm" in r.output and "seq_len" in r.output
    r = CliRunner().invoke(main, ["hardware"])
    assert r.exit_code == 0 and "H100-SXM5" in r.output and "INVALID" not in r.output


def test_pointwise_backward_reads_saved_input_and_gradient_writes_one_gradient():
    relu = Op(OpKind.ELEMENTWISE, "relu", {"numel": 1000, "n_in": 1, "n_out": 1, "flops_per_elem": 1})
    (bwd,) = derive_backward([relu])
    # reads x and dy (2 x 1000 x 4 B), writes dx (1000 x 4 B); 2 FLOPs per element
    assert (bwd.dims["n_in"], bwd.dims["n_out"]) == (2, 1)
    assert bwd.bytes == 3 * 1000 * 4 and bwd.flops == 2 * 1000


def test_cross_entropy_and_embedding_backward_write_what_torch_writes():
    # Seen in torch.profiler on a CPU training step (transformer, 1024 tokens x vocab 8192):
    # nll_loss_backward zero-fills a [tokens x vocab] gradient (aten::zero_ [1024, 8192], 13.8 ms) before
    # _log_softmax_backward writes the input gradient; embedding_dense_backward zero-fills the whole
    # [vocab x dim] weight gradient (aten::zero_ [8192, 128]) before scatter-adding the token rows.
    tokens, vocab, dim, b = 1024, 8192, 128, 4
    loss = Op(OpKind.LOSS, "loss", {"numel": tokens * vocab, "flops_per_elem": 5}, meta={"kernels": 2})
    (lb,) = derive_backward([loss])
    assert (lb.flops, lb.bytes, lb.meta["kernels"]) == (2 * tokens * vocab, 4 * tokens * vocab * b, 3)
    emb = Op(OpKind.EMBEDDING, "wte", {"tokens": tokens, "dim": dim, "vocab": vocab})
    (eb,) = derive_backward([emb])
    read, written = tokens * dim * b + tokens * 8, (tokens * dim + vocab * dim) * b
    assert (eb.phase, eb.flops, eb.bytes, eb.meta["kernels"]) == ("bwd_weight", tokens * dim, read + written, 2)
