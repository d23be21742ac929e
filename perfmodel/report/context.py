"""Load and compute everything the sections draw, once: predictions, law, layouts, files."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import hardware as hardware_mod
from ..errors import PerfmodelError
from ..hardware import HardwareProfile
from ..predict import Prediction, predict, predict_arrays
from ..scenario import Scenario
from ..steps.law import StepLaw
from . import layouts as layouts_mod
from .inputs import ReportInputs, read_json, rows_of
from .step_law import find_law, load_runs, shipped_runs

MAX_BREAKDOWN_WIDTHS = 3


@dataclass
class ReportContext:
    inputs: ReportInputs
    hardware: list[HardwareProfile]
    widths: np.ndarray
    params: np.ndarray
    sweep: dict[str, dict[str, np.ndarray]]
    breakdown_widths: list[int]
    breakdowns: dict[tuple[str, int], Prediction]
    config: dict = field(default_factory=dict)
    law: StepLaw | None = None
    law_path: str | None = None
    runs: list[dict] | None = None
    runs_path: str | None = None
    dataset_size: float | None = None
    plans: dict = field(default_factory=dict)
    layouts: list[dict] = field(default_factory=list)
    calibrated: HardwareProfile | None = None
    validation: dict | None = None
    kernels: dict | None = None
    diagnostics: dict | None = None

    def scenario(self, hw: HardwareProfile) -> Scenario:
        """The parallel models' scenario on ``hw``: the report's model, knobs (the global batch is the
        layout search's), dtype and optimizer."""
        knobs = {k: v for k, v in self.inputs.knobs.items() if k != "batch"}
        return Scenario(self.inputs.model, hw, knobs, self.inputs.dtype, self.inputs.optimizer)

    def fastest_layout(self, hw_name: str, width: int) -> dict | None:
        """The layout search's row for ``width`` on ``hw_name`` (None without a plan or when nothing fits)."""
        return next((r for r in self.layouts if r["hardware"] == hw_name and r["width"] == width and r["fits"]),
                    None)


def default_breakdown_widths(widths) -> list[int]:
    """Smallest, middle and largest width."""
    w = sorted(set(int(x) for x in widths))
    return sorted({w[0], w[len(w) // 2], w[-1]})[:MAX_BREAKDOWN_WIDTHS]


def load_context(inputs: ReportInputs) -> ReportContext:
    if not inputs.hardware:
        raise PerfmodelError("no hardware given; name at least one profile (see `perfmodel hardware`)")
    if not inputs.widths:
        raise PerfmodelError("no widths given; e.g. --widths 64..4096")
    hws = [hardware_mod.load(h) for h in dict.fromkeys(inputs.hardware)]
    widths = np.array(sorted(set(int(w) for w in inputs.widths)), dtype=np.int64)
    sweep = {hw.name: predict_arrays(inputs.model, widths, hw, inputs.dtype, inputs.optimizer, **inputs.knobs)
             for hw in hws}
    params = np.asarray(sweep[hws[0].name]["params"], float)
    bw = sorted(set(int(w) for w in inputs.breakdown_widths)) if inputs.breakdown_widths else \
        default_breakdown_widths(widths)
    breakdowns = {(hw.name, w): predict(inputs.model, w, hw, inputs.dtype, inputs.optimizer, **inputs.knobs)
                  for hw in hws for w in bw}
    ctx = ReportContext(inputs, hws, widths, params, sweep, bw, breakdowns,
                        config=dict(next(iter(breakdowns.values())).config))
    ctx.law, ctx.law_path = find_law(inputs.model, inputs.steps_law)
    ctx.runs_path = inputs.runs or (shipped_runs(inputs.model) if ctx.law and not inputs.steps_law else None)
    if ctx.runs_path:
        ctx.runs = load_runs(ctx.runs_path)
    ctx.dataset_size = _dataset_size(inputs, ctx.runs)
    ctx.plans = layouts_mod.plans(ctx)
    ctx.layouts = layouts_mod.layout_rows(ctx.plans)
    ctx.calibrated = _calibrated(inputs, hws)
    if inputs.validation:
        ctx.validation = read_json(inputs.validation, "validation")
        ctx.validation["rows"] = rows_of(ctx.validation, inputs.validation, "validation",
                                         ("width", "predicted_s", "measured_s"))
    if inputs.kernels:
        ctx.kernels = read_json(inputs.kernels, "kernels")
        ctx.kernels["rows"] = rows_of(ctx.kernels, inputs.kernels, "kernels", ("predicted_s", "measured_s"))
    if inputs.diagnostics:
        ctx.diagnostics = read_json(inputs.diagnostics, "diagnostics")
        ctx.diagnostics["rows"] = rows_of(ctx.diagnostics, inputs.diagnostics, "diagnostics", ("width",))
    return ctx


def _dataset_size(inputs, runs) -> float | None:
    """--dataset-size, else the largest D among the runs."""
    if inputs.dataset_size is not None:
        if not inputs.dataset_size > 0:
            raise PerfmodelError(f"dataset size {inputs.dataset_size!r} is not allowed; it must be positive")
        return float(inputs.dataset_size)
    sizes = [float(r["dataset_size"]) for r in runs or [] if isinstance(r.get("dataset_size"), (int, float))]
    return max(sizes) if sizes else None


def _calibrated(inputs, hws) -> HardwareProfile | None:
    """--profile, else the first calibrated profile among --hardware."""
    if inputs.profile:
        hw = hardware_mod.load(inputs.profile)
        if not hw.calibrated:
            raise PerfmodelError(f"profile {inputs.profile!r} has no 'calibration' section; run "
                                 "`perfmodel calibrate` or pass a calibrated profile")
        return hw
    return next((h for h in hws if h.calibrated), None)
