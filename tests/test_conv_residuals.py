"""The conv shapes the full CPU calibration measures: what the FLOP cap keeps of speech's convs."""
from perfmodel.calibrate.conv import reference_shapes
from perfmodel.calibrate.plan import FULL_CPU

from perfmodel.ops import conv_out_hw


def _kept(plan):
    """Shapes the conv probes time: ``6 n k p q c r s`` (forward and both backward passes) under the cap."""
    out = []
    for d in reference_shapes(plan.conv_models):
        p, q = conv_out_hw(d)
        if 6 * d["n"] * d["k"] * p * q * d["c"] * d["r"] * d["s"] <= plan.conv_max_flops:
            out.append((d, d["n"] * p * q))     # the implicit GEMM's M = n x p x q
    return out


def test_speech_second_conv_is_measured_beyond_batch_two():
    # speech's conv2 (32 -> 32 channels, 21 x 11 filter).  At 161 bins x 100 frames its input is 81 x 50 and
    # its output 41 x 50: batch 2 costs 6 x 2 x 32 x 2050 x 32 x 21 x 11 = 5.8e9 FLOPs (kept), batch 8 2.3e10,
    # over the 2e10 cap.  The inputs of 81 bins give 41 x 25 (50 frames) and 41 x 13 (25 frames) -> outputs
    # 21 x 25 and 21 x 13: M = 16 x 525 = 8,400 and 48 x 273 = 13,104, at 1.2e10 and 1.9e10 FLOPs.
    conv2 = sorted(m for d, m in _kept(FULL_CPU) if (d["c"], d["k"], d["r"], d["s"]) == (32, 32, 21, 11))
    assert conv2 == [2 * 41 * 50, 16 * 21 * 25, 48 * 21 * 13]
    assert 6 * 8 * 32 * 41 * 50 * 32 * 21 * 11 > FULL_CPU.conv_max_flops
