"""Calibrated tables inside a profile's ``calibration`` section.

Each lookup returns ``None`` when the profile has no measurement for that
kind, and the roofline falls back to datasheet efficiencies.
"""
from __future__ import annotations

from ..errors import ProfileError


def validate_calibration(cal, where: str) -> None:
    if not isinstance(cal, dict):
        raise ProfileError(f"{where}: key 'calibration' must be an object")


def gemm_efficiency(hw, dtype, m, n, k, batch=1, trans_b=False):
    return None


def bandwidth_Bps(hw, nbytes):
    return None


def overhead_s(hw, kind):
    return None


def conv_time_s(hw, op):
    return None


def rnn_time_s(hw, op):
    return None
