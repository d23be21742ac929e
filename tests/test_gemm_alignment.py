"""GEMM efficiency off the power-of-two grid (``perfmodel.cost.alignment``): the alignment class of a
shape, the measured factor per class, and the calibration shapes that measure it."""
import numpy as np
import pytest
from perfmodel.calibrate.plan import FULL_CPU, QUICK, CalibrationPlan
from test_calibration_tables import gemm_points, with_cal

from perfmodel.cost import alignment as al, rates


@pytest.mark.parametrize("shape, cls", [
    ((64, 64, 64), 4),       # powers of two: the grid itself
    ((1, 1, 1), 4),          # 1 is 2^0
    ((96, 128, 1024), 4),    # 96 = 32 x 3: lowbit 32, capped at 16
    ((24, 128, 128), 3),     # 24 = 8 x 3
    ((1448, 61, 534), 0),    # 1448 = 8 x 181 (8), 61 odd (1), 534 = 2 x 267 (2): min 1 -> class 0
    ((12, 256, 20), 2),      # 12 = 4 x 3, 20 = 4 x 5
    ((5, 64, 64), 0),
])
def test_alignment_class(shape, cls):
    assert al.alignment_class(*shape) == cls


def test_alignment_class_is_vectorized():
    got = al.alignment_class(np.array([64, 61, 24]), np.array([64, 64, 64]), 64.0)
    assert got.tolist() == [4, 0, 3]


def test_class_factors_median_and_fill():
    # class 0: losses ln 1.2, ln 1.3, ln 1.4 -> median 1.3; class 1: 1.1; class 2: 0.9; class 3 unmeasured:
    # nearest measured are 2 and 4 (grid, 1.0), both one away -> the less aligned, class 2: 0.9
    f = al.class_factors([0, 0, 0, 1, 2], np.log([1.2, 1.3, 1.4, 1.1, 0.9]))
    assert f == pytest.approx([1.3, 1.1, 0.9, 0.9, 1.0])
    assert al.class_factors([], []) == pytest.approx([1.0] * 5)   # nothing measured: the grid everywhere


def _eff(m, n, k):
    return 0.2 + 0 * m * n * k   # the grid runs at 20 % of peak everywhere


def test_rates_divide_the_grid_by_the_measured_factor():
    hw0 = with_cal({"gemm": gemm_points(1.0, _eff)})
    peak = hw0.peak_flops("fp32")
    grid = gemm_points(peak, _eff)
    # off-grid points: odd shapes (class 0) run 1.25x slower than the grid, 4-aligned ones (class 2) 1.1x
    off = []
    for (m, n, k), slow in (((61, 100, 37), 1.25), ((99, 33, 250), 1.25), ((12, 100, 36), 1.1)):
        t = 2 * m * n * k / (peak * 0.2) * slow
        off.append({"dtype": "fp32", "m": m, "n": n, "k": k, "batch": 1, "trans_a": False, "trans_b": True,
                    "time_s": t, "offgrid": True})
    hw = with_cal({"gemm": grid + off})
    eff = lambda *s: rates.gemm_efficiency(hw, "fp32", *s, trans_b=True)  # noqa: E731
    assert eff(128, 128, 128) == pytest.approx(0.2, rel=1e-3)          # on the grid: unchanged
    assert eff(201, 77, 45) == pytest.approx(0.2 / 1.25, rel=1e-3)     # odd: class 0's factor
    assert eff(20, 100, 36) == pytest.approx(0.2 / 1.1, rel=1e-3)      # 4-aligned: class 2's factor
    assert eff(24, 128, 128) == pytest.approx(0.2 / 1.1, rel=1e-3)     # 8-aligned, unmeasured: ties go to class 2
    # the factors do not depend on what was asked first: a fresh copy of the profile asked for them
    # before any efficiency gets the same table (1.25 for class 0 and 1, 1.1 for 2 and 3, 1 for 4)
    fresh = with_cal({"gemm": grid + off})
    assert rates.rate_tables(fresh).offgrid_factors("fp32", False, True) == pytest.approx(
        [1.25, 1.25, 1.1, 1.1, 1.0], rel=1e-3)
    # a profile without off-grid points prices every shape by the grid, as before
    assert rates.gemm_efficiency(with_cal({"gemm": grid}), "fp32", 201, 77, 45, trans_b=True) == pytest.approx(
        0.2, rel=1e-3)


def test_offgrid_shapes_have_the_class_they_stand_for():
    for plan in (QUICK, FULL_CPU):
        shapes = plan.gemm_offgrid_shapes()
        assert len(shapes) == plan.gemm_offgrid == len(set(shapes))
        assert shapes == plan.gemm_offgrid_shapes()       # the same every run
        classes = [int(al.alignment_class(m, n, k)) for _, m, n, k in shapes]
        # the alignments 1, 2, 4, 8 in turn -> classes 0, 1, 2, 3 in turn
        assert classes == [i % 4 for i in range(len(shapes))]
        assert all(1e5 <= 2 * m * n * k <= plan.max_gemm_flops for _, m, n, k in shapes)
    # a cube too small to reach 1e5 FLOPs gives fewer shapes, not an endless search
    assert CalibrationPlan("tiny", gemm_cube=(8, 16), gemm_offgrid=4).gemm_offgrid_shapes() == []
