"""Calibrated tables (perfmodel.hardware.calibration, perfmodel.cost.interp / rates / residuals):
validation, interpolation, lookups, speed.

Expected values are formulas: the synthetic measurements are generated from
a known law (a power law in log space, a constant bandwidth, a fixed ratio to
the analytic model), and each lookup must give that law back.
"""
import copy

import numpy as np
import pytest

from perfmodel import hardware
from perfmodel.cost import interp, op_time, rates, residuals, roofline
from perfmodel.cost.waves import gemm_wave_efficiency
from perfmodel.errors import ProfileError
from perfmodel.hardware.profile import profile_from_dict
from perfmodel.ops import Op, OpKind
from perfmodel.predict import predict, predict_arrays

SIZES = (8, 32, 128, 512, 2048)


def base_dict(kind="cpu"):
    return copy.deepcopy(hardware.load(hardware.DEFAULT_CPU if kind == "cpu" else hardware.DEFAULT_GPU).to_dict())


def with_cal(cal, kind="cpu", where="test.json"):
    d = base_dict(kind)
    d["calibration"] = cal
    return profile_from_dict(d, where)


def law(m, n, k):
    """A made-up efficiency law, linear in log space: 0.05 * m^0.3 * n^0.2 * k^0.1."""
    return 0.05 * np.power(m, 0.3) * np.power(n, 0.2) * np.power(k, 0.1)


def gemm_points(hw_peak, eff_fn, dispatch_s=0.0, layouts=((False, True),), dtype="fp32"):
    pts = []
    for ta, tb in layouts:
        for m in SIZES:
            for n in SIZES:
                for k in SIZES:
                    t = 2 * m * n * k / (hw_peak * eff_fn(m, n, k)) + dispatch_s
                    pts.append({"dtype": dtype, "m": m, "n": n, "k": k, "batch": 1, "trans_a": ta, "trans_b": tb,
                                "time_s": t})
    return pts


# -- validation --------------------------------------------------------------
GOOD_GEMM = {"dtype": "fp32", "m": 8, "n": 8, "k": 8, "batch": 1, "trans_a": False, "trans_b": True, "time_s": 1e-6}


@pytest.mark.parametrize("cal, key", [
    ([], "calibration"),
    ({"gemm": {}}, "calibration.gemm"),
    ({"gemm": [{**GOOD_GEMM, "m": 0}]}, "calibration.gemm[0].m"),
    ({"gemm": [GOOD_GEMM, {**GOOD_GEMM, "time_s": -1}]}, "calibration.gemm[1].time_s"),
    ({"gemm": [{**GOOD_GEMM, "dtype": "fp64"}]}, "calibration.gemm[0].dtype"),
    ({"gemm": [{**GOOD_GEMM, "trans_b": "yes"}]}, "calibration.gemm[0].trans_b"),
    ({"gemm": [{k: v for k, v in GOOD_GEMM.items() if k != "k"}]}, "calibration.gemm[0].k"),
    ({"memory": [{"op": "scatter", "bytes": 8, "time_s": 1e-6}]}, "calibration.memory[0].op"),
    ({"memory": [{"op": "copy", "bytes": 8.5, "time_s": 1e-6}]}, "calibration.memory[0].bytes"),
    ({"overhead_us": {"gemm": "fast"}}, "calibration.overhead_us.gemm"),
    ({"overhead_us": [1.0]}, "calibration.overhead_us"),
    ({"rnn": [{"dtype": "fp32", "cell": "lstm2", "hidden": 8, "batch": 2, "steps": 3, "input": 8, "fwd_s": 1e-3}]},
     "calibration.rnn[0].cell"),
    ({"rnn": [{"dtype": "fp32", "cell": "lstm", "hidden": 8, "batch": 2, "steps": 3, "input": 8}]},
     "calibration.rnn[0].fwd_s"),
    ({"conv": [{"dtype": "fp32", "n": 1, "c": 1, "h": 2, "w": 2, "k": 1, "r": 5, "s": 5, "stride_h": 1,
                "stride_w": 1, "pad_h": 0, "pad_w": 0, "fwd_s": 1e-3}]}, "calibration.conv[0]"),
    ({"provenance": {"kind": "tpu"}}, "calibration.provenance.kind"),
    ({"gemms": []}, "calibration.gemms"),
])
def test_malformed_calibration_is_one_line_naming_file_and_key(cal, key):
    with pytest.raises(ProfileError) as e:
        with_cal(cal, where="my/profile.json")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("my/profile.json: ")
    assert key in msg


def test_every_section_optional_and_collectives_accepted():
    hw = with_cal({"collectives": {"allreduce": [{"bytes": 8, "time_s": 1e-5}], "anything": "goes"}})
    assert rates.gemm_efficiency(hw, "fp32", 64, 64, 64) is None
    assert rates.bandwidth_Bps(hw, 1e6) is None
    assert rates.overhead_s(hw, "gemm") is None
    with_cal({})


# -- datasheet-only profiles --------------------------------------------------
def test_datasheet_profile_unchanged():
    hw = hardware.load(hardware.DEFAULT_CPU)
    op = Op(OpKind.GEMM, "x", {"m": 64, "n": 256, "k": 128}, attrs={"weight": "b", "trans_b": True})
    t = op_time.op_time(op, hw)
    compute = 2 * 64 * 256 * 128 / (hw.peak_flops("fp32") * hw.efficiency["gemm_max"])
    memory = op.bytes / (hw.memory_bandwidth_Bps * hw.efficiency["memory_max"])
    assert t.time_s == pytest.approx(max(compute, memory) + hw.launch_overhead_s)
    assert predict("mlp", 128, hw).time_per_step_s > 0


# -- GEMM ---------------------------------------------------------------------
def test_gemm_interpolation_recovers_log_linear_law_between_points():
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    hw = with_cal({"gemm": gemm_points(hw0.peak_flops("fp32"), law)})
    m = np.array([20, 100, 700, 1500])
    n = np.array([300, 12, 64, 2000])
    k = np.array([50, 900, 10, 256])
    got = rates.gemm_efficiency(hw, "fp32", m, n, k, 1, True)
    np.testing.assert_allclose(got, law(m, n, k), rtol=1e-6)
    assert rates.gemm_efficiency(hw, "fp32", 100, 100, 100, 1, True) == pytest.approx(law(100, 100, 100), rel=1e-6)
    assert rates.gemm_efficiency(hw, "bf16", 100, 100, 100) is None  # no bf16 points


def test_gemm_clamps_outside_measured_box():
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    hw = with_cal({"gemm": gemm_points(hw0.peak_flops("fp32"), law)})
    # beyond the largest measured size the edge value is kept
    assert rates.gemm_efficiency(hw, "fp32", 10**5, 2048, 2048, 1, True) == pytest.approx(law(2048, 2048, 2048),
                                                                                             rel=1e-6)


def test_two_points_along_one_axis_interpolate_in_log_space():
    """Two measured convs that differ only in batch: efficiency 0.1 at M = 100, 0.2 at M = 200.
    At M = 141.42 (halfway in log2) log-linear gives exp((ln 0.1 + ln 0.2) / 2) = 0.1414; beyond
    the ends the edge value is kept.  (This layout used to stop scipy's nearest-neighbour fit.)"""
    f = interp.LogInterpolator([(100, 32, 9), (200, 32, 9)], [0.1, 0.2])
    np.testing.assert_allclose(f([50, 141.42, 200, 400], 32, 9), [0.1, 0.14142, 0.2, 0.2], rtol=1e-4)


def test_gemm_layouts_kept_apart_and_dispatch_subtracted():
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    peak = hw0.peak_flops("fp32")
    nt = gemm_points(peak, law, dispatch_s=1e-8, layouts=((False, True),))
    nn_ = gemm_points(peak, lambda m, n, k: 0.5 * law(m, n, k), dispatch_s=1e-8, layouts=((False, False),))
    hw = with_cal({"gemm": nt + nn_, "overhead_us": {"dispatch": 0.01}})
    assert rates.gemm_efficiency(hw, "fp32", 300, 300, 300, 1, True) == pytest.approx(law(300, 300, 300), rel=1e-5)
    assert rates.gemm_efficiency(hw, "fp32", 300, 300, 300, 1, False) == pytest.approx(0.5 * law(300, 300, 300),
                                                                                          rel=1e-5)
    # a layout never measured falls back to the dtype's pooled points (between the two)
    pooled = rates.gemm_efficiency(hw, "fp32", 300, 300, 300, 1, False, trans_a=True)
    assert 0.5 * law(300, 300, 300) < pooled < law(300, 300, 300)


def test_gpu_keeps_wave_quantization():
    """Table stores eff / wave_eff; a query multiplies the smooth residual back by wave_eff,
    split-K included (the same wave model as the datasheet path)."""
    hw0 = hardware.load(hardware.DEFAULT_GPU)
    peak = hw0.peak_flops("fp16")
    pts = gemm_points(peak, lambda m, n, k: 0.8 * gemm_wave_efficiency(hw0, m, n, 1, k), dtype="fp16")
    hw = with_cal({"gemm": pts}, kind="gpu")
    m = np.array([1000, 1100, 1500, 2000])  # tile edges differ at every m
    got = rates.gemm_efficiency(hw, "fp16", m, 1536, 1024)
    np.testing.assert_allclose(got, 0.8 * gemm_wave_efficiency(hw0, m, 1536, 1, 1024), rtol=1e-6)


def test_gpu_table_splits_k_of_a_skinny_gemm():
    """256 x 256 output = 4 tiles of 128 x 128 on an H100 (132 SMs): without split-K 4 of 132
    slots work; K = 8192 splits each tile min(132 // 4, 8192 // 256) = 32 ways -> 128 CTAs."""
    hw0 = hardware.load(hardware.DEFAULT_GPU)
    assert (hw0.sm_count, hw0.gemm_tile["m"], hw0.gemm_tile["n"], hw0.gemm_tile["ctas_per_sm"]) == (132, 128, 128, 1)
    assert gemm_wave_efficiency(hw0, 256, 256, 1, 8192) == pytest.approx(128 / 132)
    assert gemm_wave_efficiency(hw0, 256, 256, 1) == pytest.approx(4 / 132)
    peak = hw0.peak_flops("fp16")
    pts = gemm_points(peak, lambda m, n, k: 0.8 * gemm_wave_efficiency(hw0, m, n, 1, k), dtype="fp16")
    hw = with_cal({"gemm": pts}, kind="gpu")
    assert rates.gemm_efficiency(hw, "fp16", 256, 256, 8192) == pytest.approx(0.8 * 128 / 132, rel=1e-3)


def test_roofline_reproduces_a_measured_gemm_and_uses_backward_layouts():
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    peak = hw0.peak_flops("fp32")
    pts = gemm_points(peak, law, dispatch_s=2e-8, layouts=((False, True), (False, False), (True, False)))
    for p in pts:  # make the weight-gradient layout twice as slow
        if p["trans_a"]:
            p["time_s"] = 2 * (p["time_s"] - 2e-8) + 2e-8
    hw = with_cal({"gemm": pts, "overhead_us": {"dispatch": 0.02, "gemm": 7.0}})
    fwd = Op(OpKind.GEMM, "l", {"m": 128, "n": 512, "k": 32}, attrs={"weight": "b", "trans_b": True})
    work = 2 * 128 * 512 * 32 / (peak * law(128, 512, 32))
    assert op_time.op_time(fwd, hw).time_s == pytest.approx(max(work, roofline.memory_time(hw, fwd.bytes, "gemm"))
                                                             + 7e-6, rel=1e-5)
    bwd_weight = Op(OpKind.GEMM, "l", {"m": 32, "n": 512, "k": 128}, phase="bwd_weight",
                    attrs={"weight": "b", "trans_b": True})
    # dW = dY^T @ X: M = 512, N = 32, K = 128 with A transposed
    assert roofline.gemm_layout(bwd_weight) == (512, 32, 128, True, False)
    assert op_time.op_time(bwd_weight, hw).compute_s == pytest.approx(2 * work, rel=1e-5)
    bwd_data = Op(OpKind.GEMM, "l", {"m": 128, "n": 32, "k": 512}, phase="bwd_data",
                  attrs={"weight": "b", "trans_b": True})
    assert roofline.gemm_layout(bwd_data) == (128, 32, 512, False, False)


def test_vectorized_lookup_matches_scalar_predict():
    """Sweeps go through the calibrated tables in one vectorized pass; it must agree with predict() per width.
    (Throughput is a figure printed by ``python -m perfmodel.bench``, not a timed test.)"""
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    hw = with_cal({"gemm": gemm_points(hw0.peak_flops("fp32"), law),
                   "memory": [{"op": "copy", "bytes": b, "time_s": b / 1e10} for b in (10**3, 10**6, 10**9)],
                   "overhead_us": {"default": 5.0, "dispatch": 1.0}})
    widths = np.arange(64, 64 + 2_000)
    out = predict_arrays("mlp", widths, hw)
    assert np.all(np.isfinite(out["time_per_step_s"]))
    for i in (0, 137, 1999):
        assert out["time_per_step_s"][i] == pytest.approx(predict("mlp", int(widths[i]), hw).time_per_step_s,
                                                           rel=1e-9)


# -- memory, overhead --------------------------------------------------------
def test_bandwidth_curve_with_dispatch_removed():
    bw = 2e10
    pts = [{"op": "elementwise", "bytes": b, "time_s": 3e-8 + b / bw} for b in (2**10, 2**16, 2**22, 2**26)]
    hw = with_cal({"memory": pts, "overhead_us": {"dispatch": 0.03}})
    for nb in (2**10, 5e5, 2**26, 2**30, 100):
        assert rates.bandwidth_Bps(hw, nb, OpKind.ELEMENTWISE) == pytest.approx(bw, rel=1e-6)
    # no copy curve measured: copies use the elementwise one
    assert rates.bandwidth_Bps(hw, 2**20, OpKind.COPY) == pytest.approx(bw, rel=1e-6)


def test_overhead_lookup_and_default():
    hw = with_cal({"overhead_us": {"gemm": 6.0, "default": 4.0, "dispatch": 1.0}})
    assert rates.overhead_s(hw, "gemm") == pytest.approx(6e-6)
    assert rates.overhead_s(hw, "loss") == pytest.approx(4e-6)
    assert roofline.per_kernel_overhead_s(hw, "gemm") == pytest.approx(6e-6)
    assert rates.dispatch_s(hw) == pytest.approx(1e-6)


def test_step_call_costs_are_booked_once_per_step_on_the_optimizer():
    # 30 us per backward() call + 25 us per optimizer call; per kernel 6 us (optimizer) and 4 us (others)
    ov = {"default": 4.0, "optimizer": 6.0, "dispatch": 1.0, "backward_call": 30.0, "optimizer_call": 25.0}
    hw, bare = with_cal({"overhead_us": ov}), with_cal({"overhead_us": {k: ov[k] for k in ("default", "optimizer")}})
    assert rates.step_calls_s(hw) == pytest.approx(55e-6) and rates.step_calls_s(bare) is None
    opt = Op(OpKind.OPTIMIZER, "optimizer", {"numel": 1000}, "fp32", "optimizer",
             meta={"kernels": 5}, attrs={"optimizer": "sgd"})
    assert op_time.op_time(opt, hw).overhead_s == pytest.approx(5 * 6e-6 + 55e-6)
    assert op_time.op_time(opt, bare).overhead_s == pytest.approx(5 * 6e-6)
    # a whole step: the two predictions differ by exactly the two calls
    diff = predict("mlp", 64, hw).time_per_step_s - predict("mlp", 64, bare).time_per_step_s
    assert diff == pytest.approx(55e-6)


# -- RNN, conv -----------------------------------------------------------------
def rnn_op(hidden, batch, steps=10, input_=None, phase="fwd"):
    return Op(OpKind.RNN, "rnn", {"hidden": hidden, "input": input_ or hidden, "batch": batch, "steps": steps},
              "fp32", phase, attrs={"cell": "lstm"})


def _rnn_parts(op, hw):
    return roofline.rnn_components_split(op, hw)  # (input GEMM, recurrent part) seconds


def test_rnn_ratio_to_components_interpolated_and_bwd_split():
    """Measured = input GEMM (GEMM tables) + r * recurrent components; r = 1.5 fwd, 2.0 bwd everywhere."""
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    pts = []
    for h in (64, 256, 1024):
        for b in (4, 64):
            i_f, r_f = _rnn_parts(rnn_op(h, b), hw0)
            bwd = [_rnn_parts(rnn_op(h, b, phase=ph), hw0) for ph in ("bwd_data", "bwd_weight")]
            pts.append({"dtype": "fp32", "cell": "lstm", "hidden": h, "batch": b, "steps": 10, "input": h,
                        "fwd_s": i_f + 1.5 * r_f, "bwd_s": sum(i + 2.0 * r for i, r in bwd)})
    hw = with_cal({"rnn": pts})
    # another shape, another step count, and an input 2.6x the hidden size (DS2's first layer): the
    # input GEMM is costed as a GEMM, only the recurrent part takes the measured ratio
    op = rnn_op(512, 16, steps=35, input_=1312)
    i_f, r_f = _rnn_parts(op, hw)
    assert i_f > 0 and r_f > 0
    assert op_time.op_time(op, hw).time_s == pytest.approx(i_f + 1.5 * r_f, rel=1e-6)
    for ph in ("bwd_data", "bwd_weight"):
        i_b, r_b = _rnn_parts(rnn_op(512, 16, steps=35, input_=1312, phase=ph), hw)
        assert op_time.op_time(rnn_op(512, 16, steps=35, input_=1312, phase=ph), hw).time_s == \
            pytest.approx(i_b + 2.0 * r_b, rel=1e-6)
    # the parts add up to the whole components time
    assert sum(_rnn_parts(op, hw)) == pytest.approx(roofline.rnn_components_time(op, hw), rel=1e-12)
    gru = Op(OpKind.RNN, "g", {"hidden": 64, "input": 64, "batch": 4, "steps": 3}, attrs={"cell": "gru"})
    assert residuals.rnn_time_s(hw, gru) is None  # GRU never measured: components only


def test_rnn_per_call_cost_from_two_lengths():
    """time = F + input + r * recurrent: points at 5 and 20 steps give F and r back; 50 steps extrapolates."""
    hw0 = hardware.load(hardware.DEFAULT_CPU)
    f_call, r = 3e-3, 1.25
    pts = []
    for h in (64, 256, 1024):
        for b in (4, 32):
            for steps in (5, 20):
                i_f, r_f = _rnn_parts(rnn_op(h, b, steps), hw0)
                pts.append({"dtype": "fp32", "cell": "lstm", "hidden": h, "batch": b, "steps": steps, "input": h,
                            "fwd_s": f_call + i_f + r * r_f})
    hw = with_cal({"rnn": pts})
    op = rnn_op(512, 8, steps=50, input_=1312)
    i_f, r_f = _rnn_parts(op, hw)
    assert op_time.op_time(op, hw).time_s == pytest.approx(f_call + i_f + r * r_f, rel=1e-3)


def _conv(n=2, c=32, h=16, w=16, k=32, r=3, s=3, stride=1, pad=1, phase="fwd"):
    return Op(OpKind.CONV2D, "c", {"n": n, "c": c, "h": h, "w": w, "k": k, "r": r, "s": s, "stride_h": stride,
                                   "stride_w": stride, "pad_h": pad, "pad_w": pad}, phase=phase)


CPU0 = hardware.load(hardware.DEFAULT_CPU)


def _point(op, **ratios):
    """A measured conv whose phases took ``ratio`` x the analytic (uncalibrated) compute time."""
    times = {f"{ph}_s": r * roofline.conv_compute_s(Op(op.kind, op.path, op.dims, op.dtype, ph), CPU0)
             for ph, r in ratios.items()}
    return {"dtype": "fp32", **op.dims, **times}


def _fwd_point(op, ratio):
    return _point(op, fwd=ratio)


def test_conv_table_scales_the_analytic_time_by_the_measured_ratio():
    """Every measured conv ran 1.5x (fwd) and 3x (bwd_data) the analytic time: a conv never measured
    gets the same ratios; bwd_weight, never measured, borrows the forward ratio."""
    pts = [_point(_conv(n=n, c=c, k=k), fwd=1.5, bwd_data=3.0)
           for n in (1, 4) for c, k in ((16, 16), (32, 64), (64, 128))]
    hw = with_cal({"conv": pts})
    for phase, ratio in (("fwd", 1.5), ("bwd_data", 3.0), ("bwd_weight", 1.5)):
        op = _conv(n=2, c=32, k=32, phase=phase)
        assert op_time.op_time(op, hw).compute_s == pytest.approx(ratio * roofline.conv_compute_s(op, CPU0),
                                                                   rel=1e-6)


def test_conv_measured_geometry_keeps_its_ratio_at_another_batch():
    """DS2's second conv measured at batch 2 (3x the analytic time), the same filter with 64 input
    channels at batch 8 and width 100 (1x).  At batch 8 and width 100 DS2's conv has 8x the output
    rows: the nearest point of its class in log (M, N, K) is the 64-channel one (1 step in K against
    3 in M), yet the conv keeps its own measured 3x."""
    ds2 = dict(c=32, h=81, k=32, r=21, s=11)
    pts = [_fwd_point(_conv(n=2, w=50, **ds2, stride=1, pad=5), 3.0),
           _fwd_point(_conv(n=8, w=100, **{**ds2, "c": 64}, stride=1, pad=5), 1.0)]
    hw = with_cal({"conv": pts})
    big = _conv(n=8, w=100, **ds2, stride=1, pad=5)
    assert op_time.op_time(big, hw).compute_s == pytest.approx(3.0 * roofline.conv_compute_s(big, CPU0), rel=1e-6)
    # a conv of the class that is neither: the nearest point of the class
    assert residuals.conv_ratio(hw, _conv(n=8, w=100, **{**ds2, "c": 48}, stride=1, pad=5)) == 1.0


def test_conv_geometry_measured_at_two_batches_interpolates_in_log_m():
    """A 3x3 conv measured at batch 2 (ratio 1.0) and batch 32 (ratio 0.5: the library runs large
    batches better than the GEMM table's edge says).  Batch 8 is halfway in log M (log2 16 = 4
    doublings, 8 / 2 = 2 of them): ratio exp((ln 1 + ln 0.5) / 2) = 0.7071.  Batch 64 keeps 0.5."""
    pts = [_fwd_point(_conv(n=2, c=64, k=64, h=28, w=28), 1.0), _fwd_point(_conv(n=32, c=64, k=64, h=28, w=28), 0.5)]
    hw = with_cal({"conv": pts})
    assert residuals.conv_ratio(hw, _conv(n=8, c=64, k=64, h=28, w=28)) == pytest.approx(0.5 ** 0.5, rel=1e-9)
    assert residuals.conv_ratio(hw, _conv(n=64, c=64, k=64, h=28, w=28)) == pytest.approx(0.5, rel=1e-9)


def test_conv_ratio_interpolated_within_the_filter_class():
    """1x1 convs measured at 2x the analytic time, 3x3 at 0.5x (Winograd-like), 5 of each; one strided
    1x1 at 6x (as ResNet's downsample convs on a CPU).  An unmeasured 1x1 gets 2x, an unmeasured 3x3
    0.5x, an unmeasured strided 1x1 its class's one point, 6x; a 5x5 conv, a class with no points,
    the interpolator over all eleven."""
    pts = [_fwd_point(_conv(c=c, k=2 * c, r=1, s=1, pad=0), 2.0) for c in (16, 32, 64, 128, 256)]
    pts += [_fwd_point(_conv(c=c, k=c, h=8 + c // 16, w=8 + c // 16), 0.5) for c in (16, 32, 64, 128, 256)]
    pts += [_fwd_point(_conv(c=32, k=64, r=1, s=1, pad=0, stride=2), 6.0)]
    hw = with_cal({"conv": pts})
    assert residuals.conv_ratio(hw, _conv(c=48, k=96, r=1, s=1, pad=0)) == pytest.approx(2.0, rel=1e-6)
    assert residuals.conv_ratio(hw, _conv(c=48, k=48, h=11, w=11)) == pytest.approx(0.5, rel=1e-6)
    assert residuals.conv_ratio(hw, _conv(n=32, c=128, h=56, w=56, k=256, r=1, s=1, pad=0, stride=2)) == 6.0
    five = _conv(c=48, k=48, r=5, s=5, pad=2)
    every = interp.LogInterpolator([residuals.conv_gemm_shape(p) for p in pts], [2.0] * 5 + [0.5] * 5 + [6.0])
    assert residuals.conv_ratio(hw, five) == pytest.approx(every(*residuals.conv_gemm_shape(five.dims)), rel=1e-9)


def test_conv_ratio_vectorized_over_widths():
    """Sweeps pass array dims: element-wise the same as scalar lookups, measured geometries included."""
    pts = [_fwd_point(_conv(c=c, k=c), 1.0 + c / 100) for c in (16, 32, 64, 128, 256)]
    hw = with_cal({"conv": pts})
    cs = np.array([24, 32, 100, 256])
    op = _conv(c=cs, k=cs)
    got = residuals.conv_ratio(hw, op)
    want = [residuals.conv_ratio(hw, _conv(c=int(c), k=int(c))) for c in cs]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[1] == pytest.approx(1.32) and got[3] == pytest.approx(3.56)  # measured: their own ratios
    widths = np.array([16, 32, 64])
    pred = predict_arrays("resnet", widths, hw)  # used to stop on an array in the geometry lookup
    assert np.all(np.isfinite(pred["time_per_step_s"]))


def test_tables_cached_per_profile():
    hw = with_cal({"overhead_us": {"default": 1.0}, "memory": [{"op": "copy", "bytes": 10, "time_s": 1e-6}]})
    assert rates.rate_tables(hw) is rates.rate_tables(hw)
    assert residuals.residual_tables(hw) is residuals.residual_tables(hw)


def test_outputs_at_or_above_the_threshold_are_priced_as_fresh_pages():
    # threshold 1 MiB, 2 ns per fresh byte.  mlp width 512, batch 128, input 1024: the weight gradients are
    # 1024x512 (2 MiB) and 3 x 512x512 (1 MiB each, at the threshold: fresh); activations 128x512 = 256 KiB
    # and the head's 512x10 gradient stay below -> 2 + 3 = 5 MiB fresh per step, 5 * 2**20 * 2e-9 s.
    alloc = {"first_touch_s_per_byte": 2e-9, "always_fresh_bytes": 2**20}
    ov = {"default": 1.0}
    hw, bare = with_cal({"allocation": alloc, "overhead_us": ov}), with_cal({"overhead_us": ov})
    p, q = predict("mlp", 512, hw), predict("mlp", 512, bare)
    assert p.fresh_bytes_per_step == 5 * 2**20 and q.fresh_bytes_per_step == 0.0
    assert p.time_per_step_s - q.time_per_step_s == pytest.approx(5 * 2**20 * 2e-9)
    assert rates.fresh_bytes(hw, [2**20 - 1, 2**20]).tolist() == [0.0, 2**20]
    assert rates.fresh_bytes(bare, 2**20) is None
