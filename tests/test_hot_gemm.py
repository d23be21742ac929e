"""GEMMs whose weight stays in cache: a recurrence applies one weight at every time step, so on a CPU
its forward and data-gradient GEMMs run at the hot-operand points' efficiency, not the cold table's
(perfmodel.calibrate.gemm ``hot``, perfmodel.cost.roofline.hot_weight_efficiency)."""
import numpy as np
import pytest
from perfmodel.calibrate.gemm import gemm_callable
from perfmodel.calibrate.plan import FULL_CPU, QUICK

from perfmodel.cost.roofline import compute_time
from perfmodel.errors import PerfmodelError
from perfmodel.ops import Op, OpKind
from perfmodel.predict import predict, predict_arrays
from tests.test_calibration_tables import GOOD_GEMM, base_dict, gemm_points, with_cal

PEAK = base_dict()["peak_tflops"]["fp32"] * 1e12
COLD_EFF, HOT_EFF = 0.1, 0.4
LAYOUTS = ((False, True), (False, False), (True, False))


def profile(hot: bool):
    pts = gemm_points(PEAK, lambda m, n, k: COLD_EFF, layouts=LAYOUTS)
    if hot:   # hot points at m <= 32 and n x k <= 128 x 128 only
        pts += [{**p, "time_s": p["time_s"] * COLD_EFF / HOT_EFF, "hot": True}
                for p in gemm_points(PEAK, lambda m, n, k: COLD_EFF, layouts=LAYOUTS[:2])
                if p["m"] <= 32 and p["n"] * p["k"] <= 128 * 128]
    return with_cal({"gemm": pts, "overhead_us": {"default": 1.0}})


def gemm(m, n, k, phase="fwd", repeat=142):
    return Op(OpKind.GEMM, "rhn/recurrent", {"m": m, "n": n, "k": k}, "fp32", phase, repeat,
              attrs={"weight": "b", "trans_b": True})


def test_the_full_cpu_plan_times_small_m_with_weights_that_fit_in_cache():
    shapes = FULL_CPU.gemm_hot_shapes()
    assert QUICK.gemm_hot_shapes() == [] and len(shapes) == 7 * 15    # (4096, 4096) is 64 MiB: left out
    assert max(n * k * 4 for _, n, k in shapes) == 16 * 2**20 and max(m for m, _, _ in shapes) == 64
    call = gemm_callable(1, 4, 32, 16, False, True, "fp32", "cpu", hot=True)
    assert call() is call() and tuple(call().shape) == (4, 32)      # one output, reused
    # and it is a view of the shared output pool, as every other hot point's: 210 hot points holding
    # their own buffers left a heap free chunk that served the first-touch probe's "fresh" 64 MiB
    # without a page fault (a full calibration stored 3.4e-12 s/B instead of ~4e-10)
    other = gemm_callable(1, 8, 64, 64, False, False, "fp32", "cpu", hot=True)
    assert call().untyped_storage().data_ptr() == other().untyped_storage().data_ptr()


def test_a_repeated_weight_runs_hot_and_nothing_else_does():
    hw, cold = profile(True), profile(False)
    flops = 2 * 8 * 64 * 64
    # forward at m = 8, n x k = 64 x 64, 142 time steps: 2 m n k / (peak x 0.4)
    assert compute_time(gemm(8, 64, 64), hw) == pytest.approx(flops / (PEAK * HOT_EFF), rel=1e-6)
    assert compute_time(gemm(8, 64, 64), cold) == pytest.approx(flops / (PEAK * COLD_EFF), rel=1e-6)
    for op in (gemm(8, 64, 64, repeat=1),            # used once per step: cold, as an MLP weight
               gemm(8, 64, 64, phase="bwd_weight"),  # writes the weight's gradient: cold
               gemm(128, 64, 64),                    # m beyond the hot points
               gemm(8, 256, 128)):                   # n x k beyond them
        assert compute_time(op, hw) == pytest.approx(compute_time(op, cold), rel=1e-9)


def test_a_recurrent_model_agrees_between_predict_and_sweeps():
    hw = with_cal({"gemm": gemm_points(PEAK, lambda m, n, k: COLD_EFF, layouts=LAYOUTS)
                   + [{**p, "hot": True, "time_s": p["time_s"] / 4}
                      for p in gemm_points(PEAK, lambda m, n, k: COLD_EFF, layouts=LAYOUTS[:2])],
                   "overhead_us": {"default": 1.0}})
    knobs = {"batch": 4, "seq_len": 20, "depth": 1}
    one = [predict("charlm", w, hw, **knobs).time_per_step_s for w in (32, 64)]
    np.testing.assert_allclose(predict_arrays("charlm", [32, 64], hw, **knobs)["time_per_step_s"], one)
    assert predict("charlm", 64, hw, **knobs).time_per_step_s < predict("charlm", 64, profile(False),
                                                                        **knobs).time_per_step_s


def test_a_non_boolean_hot_flag_is_refused():
    with pytest.raises(PerfmodelError, match=r"calibration\.gemm\[0\]\.hot"):
        with_cal({"gemm": [{**GOOD_GEMM, "hot": "yes"}]})
