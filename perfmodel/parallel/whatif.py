"""What if the hardware were faster?  Break-even speedups for larger models.

For each width w, and each resource r (peak compute, memory bandwidth,
interconnect bandwidth, or ``all`` three at once), the smallest factor f by
which r must grow -- all else fixed (kernel launch overhead and link
latencies included), every width re-planned on the faster device -- such
that w trains faster than every smaller width::

    break_even(w, r) = min f  such that  T*(w, r x f) <= min_{w' < w} T*(w', r x f)

T* is the fastest total time over all layouts (:func:`.search.plan`).  f is
searched on the grid 2^(k/2) up to ``max_factor`` (so it is resolved to
within a factor sqrt(2)); ``None`` means no factor up to ``max_factor``
suffices (the larger model is bound by a resource that did not change, or
both scale alike), 1.0 that w is already at least as fast.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import PerfmodelError
from ..hardware import HardwareProfile
from ..hardware.profile import BUSBW_KEYS
from ..scenario import Scenario
from .search import plan

RESOURCES = ("compute", "memory", "interconnect", "all")


def scaled_profile(hw: HardwareProfile, resource: str, factor: float) -> HardwareProfile:
    """``hw`` with one resource ``factor`` x faster (calibrated and measured collective bandwidths too);
    ``all``: all three."""
    if resource == "all":
        for r in RESOURCES[:-1]:
            hw = scaled_profile(hw, r, factor)
        return hw
    if resource == "compute":
        return dataclasses.replace(hw, peak_tflops={k: v * factor for k, v in hw.peak_tflops.items()})
    if resource == "memory":
        return dataclasses.replace(hw, memory_bandwidth_GBps=hw.memory_bandwidth_GBps * factor)
    if resource == "interconnect":
        cal = dict(hw.calibration or {})
        if "collectives" in cal:
            cal["collectives"] = {k: ({**v, "beta_s_per_byte": v["beta_s_per_byte"] / factor}
                                      if isinstance(v, dict) and "beta_s_per_byte" in v else v)
                                  for k, v in cal["collectives"].items()}
        measured = {k: getattr(hw, k) * factor for k in BUSBW_KEYS if getattr(hw, k) is not None}
        return dataclasses.replace(hw, intra_node_bandwidth_GBps=hw.intra_node_bandwidth_GBps * factor,
                                   inter_node_bandwidth_GBps=hw.inter_node_bandwidth_GBps * factor,
                                   calibration=cal or hw.calibration, **measured)
    raise PerfmodelError(f"unknown resource {resource!r}; allowed: {', '.join(RESOURCES)}")


def _totals(p) -> np.ndarray:
    return np.array([r.total_time_s if r.fits else np.inf for r in p.rows])


def _wins(t: np.ndarray) -> np.ndarray:
    """Per width: strictly larger-than-all-smaller-widths' best is beaten or matched."""
    prev = np.minimum.accumulate(np.concatenate([[np.inf], t[:-1]]))
    return np.isfinite(t) & (t <= prev)


def break_even(scenario: Scenario, widths, space, dataset_size, law, resources=RESOURCES,
               max_factor: float = 1024.0) -> dict:
    """Break-even factor per width and resource of ``scenario``'s hardware; see the module docstring."""
    hw = scenario.hardware
    for r in resources:
        if r not in RESOURCES:
            raise PerfmodelError(f"unknown resource {r!r}; allowed: {', '.join(RESOURCES)}")
    if not max_factor > 1:
        raise PerfmodelError(f"--max-factor {max_factor!r} is not allowed; it must be > 1")
    base = plan(scenario, widths, space, dataset_size, law)
    t0 = _totals(base)
    widths = base.widths
    out = {"model": scenario.model, "hardware": hw.name, "devices": space.devices, "widths": widths,
           "baseline_total_s": [float(x) if np.isfinite(x) else None for x in t0],
           "fastest_width": base.fastest.width if base.fastest else None, "max_factor": max_factor,
           "baseline_total_median_s": [r.total_time_median_s for r in base.rows],
           "baseline_total_interval_80": [r.total_time_interval_80 for r in base.rows],
           "p_fastest": [r.p_fastest for r in base.rows], "uncertainty": base.uncertainty,
           "extrapolation": base.uncertainty.get("extrapolation"), "break_even": {}}
    grid = [2 ** (k / 2) for k in range(1, int(np.floor(2 * np.log2(max_factor))) + 1)]
    for r in resources:
        found = np.where(_wins(t0), 1.0, np.nan)
        found[0] = np.nan  # the smallest width has nothing smaller to beat
        for f in grid:
            todo = np.isnan(found)
            todo[0] = False
            if not todo.any():
                break
            faster = dataclasses.replace(scenario, hardware=scaled_profile(hw, r, f))
            t = _totals(plan(faster, widths, space, dataset_size, law))
            found = np.where(todo & _wins(t), f, found)
        out["break_even"][r] = [None if (i == 0 or np.isnan(x)) else float(x) for i, x in enumerate(found)]
    return out
