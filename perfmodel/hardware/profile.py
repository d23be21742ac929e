"""Hardware profiles: JSON files with the unit in every key, loaded into frozen dataclasses.

Schema (``profiles/*.json``)::

    name, kind ("gpu" | "cpu"), description
    peak_tflops            {dtype: dense TFLOP/s}  -- a dtype absent here is unsupported
    memory_bandwidth_GBps  memory_capacity_GiB     sm_count   l2_cache_MiB
    kernel_launch_overhead_us
    register_file_KiB_per_sm  shared_memory_KiB_per_sm
    devices_per_node
    intra_node_bandwidth_GBps  intra_node_latency_us   (per direction, per device)
    inter_node_bandwidth_GBps  inter_node_latency_us
    intra_node_busbw_GBps  inter_node_busbw_GBps   (optional) NCCL ring bus bandwidth measured on that
                           link (nccl-tests ``busbw``, large messages): what collectives are priced at
                           instead of the datasheet bandwidth; at most that bandwidth
    efficiency             {gemm_max, memory_max, conv_max, elementwise_max?}  fractions of peak reached:
                           gemm_max of peak_tflops for GEMMs, conv_max for convolutions,
                           memory_max of memory_bandwidth_GBps, elementwise_max of the fp32 peak
                           for pointwise work on the vector units (elementwise ops, reductions,
                           losses, optimizer updates); elementwise_max defaults to gemm_max
                           when a profile lacks it; attention_max (optional): FlashAttention-2's
                           matmul FLOPs per second over the 16-bit peak, softmax included (without
                           it: its GEMM FLOPs at the GEMM efficiency + softmax on the vector units)
    in_step_fraction       (optional) the fraction of the isolated-kernel tensor-core rate (GEMMs and
                           attention at the ``efficiency`` figures above) those kernels keep inside a
                           training step on a full node; a step's GEMM and attention compute time is
                           divided by it (:func:`perfmodel.cost.op_time.op_time`), an isolated kernel's
                           is not.  Fitted on published runs (``tools/fit_in_step.py``), cited in ``sources``
    gemm_tile              {m, n, ctas_per_sm}   output tile for wave quantization (integers >= 1,
                           as sm_count and devices_per_node)
    sources                {key: citation}  -- every numeric key above needs one
    calibration            (optional) measured points + provenance, see perfmodel.hardware.calibration

Rates use base 1000 (GB/s, TFLOP/s); sizes use base 1024 with "iB".
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..ops import DTYPES
from .calibration import validate_calibration

NUMERIC_KEYS = (
    "memory_bandwidth_GBps", "memory_capacity_GiB", "sm_count", "l2_cache_MiB",
    "kernel_launch_overhead_us", "register_file_KiB_per_sm", "shared_memory_KiB_per_sm",
    "devices_per_node", "intra_node_bandwidth_GBps", "intra_node_latency_us",
    "inter_node_bandwidth_GBps", "inter_node_latency_us",
)
REQUIRED_KEYS = ("name", "kind", "description", "peak_tflops", *NUMERIC_KEYS,
                 "efficiency", "gemm_tile", "sources")
#: measured link bandwidths (GB/s): optional, positive, <= the datasheet key beside them, cited in ``sources``
BUSBW_KEYS = {"intra_node_busbw_GBps": "intra_node_bandwidth_GBps",
              "inter_node_busbw_GBps": "inter_node_bandwidth_GBps"}
#: optional fraction in (0, 1] of the isolated tensor-core rate kept inside a training step (module doc)
IN_STEP_KEY = "in_step_fraction"
OPTIONAL_KEYS = ("calibration", *BUSBW_KEYS, IN_STEP_KEY)
EFFICIENCY_KEYS = ("gemm_max", "memory_max", "conv_max", "elementwise_max", "attention_max")
EFFICIENCY_REQUIRED = ("gemm_max", "memory_max", "conv_max")
#: optional efficiency key -> the required key whose value it takes when a profile lacks it
EFFICIENCY_DEFAULTS = {"elementwise_max": "gemm_max"}
TILE_KEYS = ("m", "n", "ctas_per_sm")
#: counts, not rates: integers >= 1 (a whole float such as 80.0 is read as 80)
INTEGER_KEYS = ("sm_count", "devices_per_node")


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    kind: str
    description: str
    peak_tflops: Mapping[str, float]
    memory_bandwidth_GBps: float
    memory_capacity_GiB: float
    sm_count: int
    l2_cache_MiB: float
    kernel_launch_overhead_us: float
    register_file_KiB_per_sm: float
    shared_memory_KiB_per_sm: float
    devices_per_node: int
    intra_node_bandwidth_GBps: float
    intra_node_latency_us: float
    inter_node_bandwidth_GBps: float
    inter_node_latency_us: float
    efficiency: Mapping[str, float]
    gemm_tile: Mapping[str, int]
    sources: Mapping[str, str]
    calibration: Mapping[str, Any] | None = None
    intra_node_busbw_GBps: float | None = None
    inter_node_busbw_GBps: float | None = None
    in_step_fraction: float | None = None
    path: str = field(default="", compare=False)

    def __post_init__(self):
        missing = {k: self.efficiency[v] for k, v in EFFICIENCY_DEFAULTS.items() if k not in self.efficiency}
        if missing:  # an older profile: the documented defaults (EFFICIENCY_DEFAULTS)
            object.__setattr__(self, "efficiency", {**self.efficiency, **missing})

    # convenience in SI units -------------------------------------------------
    def peak_flops(self, dtype: str) -> float:
        """Dense peak in FLOP/s for ``dtype``; raises if the device lacks it."""
        try:
            return self.peak_tflops[dtype] * 1e12
        except KeyError:
            raise ProfileError(f"dtype {dtype!r} is not supported on {self.name}; "
                               f"allowed: {', '.join(self.peak_tflops)}") from None

    @property
    def memory_bandwidth_Bps(self) -> float:
        return self.memory_bandwidth_GBps * 1e9

    @property
    def memory_capacity_bytes(self) -> float:
        return self.memory_capacity_GiB * 2**30

    @property
    def launch_overhead_s(self) -> float:
        return self.kernel_launch_overhead_us * 1e-6

    @property
    def calibrated(self) -> bool:
        return bool(self.calibration)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in REQUIRED_KEYS}
        d.update({k: getattr(self, k) for k in (*BUSBW_KEYS, IN_STEP_KEY) if getattr(self, k) is not None})
        d = json.loads(json.dumps(d))
        if self.calibration:
            d["calibration"] = json.loads(json.dumps(self.calibration))
        return d


def calibration_base_dict(base: HardwareProfile) -> dict:
    """``base`` as a dict to add a calibration to: everything but ``in_step_fraction`` (and its source),
    which corrects the datasheet efficiencies against published runs; a calibrated profile's rates are
    measured instead, and ``perfmodel validate --record`` measures its error in a step."""
    d = base.to_dict()
    d.pop(IN_STEP_KEY, None)
    d["sources"] = {k: v for k, v in d["sources"].items() if k != IN_STEP_KEY}
    return d


def _positive(where: str, key: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ProfileError(f"{where}: key {key!r} must be a positive number, got {v!r}")


def _whole(where: str, key: str, v) -> int:
    """``v`` as an int when it is a whole number >= 1 (after :func:`_positive`); else one line naming it."""
    if not float(v).is_integer():
        raise ProfileError(f"{where}: key {key!r} must be an integer >= 1, got {v!r}")
    return int(v)


def _check_map(where, key, m, allowed, required, upper=None):
    if not isinstance(m, dict):
        raise ProfileError(f"{where}: key {key!r} must be an object")
    for k in m:
        if k not in allowed:
            raise ProfileError(f"{where}: unknown key '{key}.{k}'; allowed: {', '.join(allowed)}")
    for k in required:
        if k not in m:
            raise ProfileError(f"{where}: missing key '{key}.{k}'")
    for k, v in m.items():
        _positive(where, f"{key}.{k}", v)
        if upper is not None and v > upper:
            raise ProfileError(f"{where}: key '{key}.{k}' must be <= {upper}, got {v!r}")


def profile_from_dict(d: dict, where: str = "<profile>") -> HardwareProfile:
    """Validate ``d`` and build a profile; errors name ``where`` and the key."""
    if not isinstance(d, dict):
        raise ProfileError(f"{where}: a profile must be a JSON object")
    for k in d:
        if k not in REQUIRED_KEYS and k not in OPTIONAL_KEYS:
            raise ProfileError(f"{where}: unknown key {k!r}")
    for k in REQUIRED_KEYS:
        if k not in d:
            raise ProfileError(f"{where}: missing key {k!r}")
    if d["kind"] not in ("gpu", "cpu"):
        raise ProfileError(f"{where}: key 'kind' must be 'gpu' or 'cpu', got {d['kind']!r}")
    for k in NUMERIC_KEYS:
        _positive(where, k, d[k])
    _check_map(where, "peak_tflops", d["peak_tflops"], DTYPES, ("fp32",))
    _check_map(where, "efficiency", d["efficiency"], EFFICIENCY_KEYS, EFFICIENCY_REQUIRED, upper=1.0)
    _check_map(where, "gemm_tile", d["gemm_tile"], TILE_KEYS, TILE_KEYS)
    d = {**d, **{k: _whole(where, k, d[k]) for k in INTEGER_KEYS},
         "gemm_tile": {k: _whole(where, f"gemm_tile.{k}", v) for k, v in d["gemm_tile"].items()}}
    src = d["sources"]
    if not isinstance(src, dict):
        raise ProfileError(f"{where}: key 'sources' must be an object")
    for k in ("peak_tflops", *NUMERIC_KEYS):
        if not src.get(k):
            raise ProfileError(f"{where}: missing source for key {k!r} in 'sources'")
    for k, datasheet in BUSBW_KEYS.items():
        if k in d:
            _positive(where, k, d[k])
            if d[k] > d[datasheet]:
                raise ProfileError(f"{where}: key {k!r} ({d[k]!r}) exceeds {datasheet!r} ({d[datasheet]!r}); "
                                   "a ring's bus bandwidth cannot pass the link's")
            if not src.get(k):
                raise ProfileError(f"{where}: missing source for key {k!r} in 'sources'")
    if IN_STEP_KEY in d:
        _positive(where, IN_STEP_KEY, d[IN_STEP_KEY])
        if d[IN_STEP_KEY] > 1:
            raise ProfileError(f"{where}: key {IN_STEP_KEY!r} must be in (0, 1], got {d[IN_STEP_KEY]!r}")
        if not src.get(IN_STEP_KEY):
            raise ProfileError(f"{where}: missing source for key {IN_STEP_KEY!r} in 'sources'")
    cal = d.get("calibration")
    if cal is not None:
        validate_calibration(cal, where)
    return HardwareProfile(**{k: d[k] for k in REQUIRED_KEYS}, calibration=cal,
                           **{k: d[k] for k in (*BUSBW_KEYS, IN_STEP_KEY) if k in d}, path=where)


def load_profile_file(path) -> HardwareProfile:
    from ..jsonfile import read_json_object
    return profile_from_dict(read_json_object(path, "profile", ProfileError), str(Path(path)))
