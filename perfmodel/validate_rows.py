"""The results of ``perfmodel validate``: one row per configuration (predicted, measured, errors,
the attributions of the error to page faults and to the machine's speed) and the run (MAPEs, drift).

:mod:`perfmodel.validate` measures them; the formulas are in each property's docstring::

    error = (predicted - measured) / measured        MAPE = mean |error|
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ValidationRow:
    width: int
    predicted_s: float
    measured_s: float | None   # None: did not run (see ``note``)
    spread: float | None = None
    note: str = ""
    rounds_s: tuple = ()         # measured seconds of each round (rounds > 1)
    fresh_bytes: float | None = None  # CPU: bytes faulted in per step (minor page faults x page size), median
    predicted_fresh_bytes: float | None = None  # CPU: the bytes the model prices as faulted in per step
    first_touch_s_per_byte: float | None = None  # CPU: the profile's price of a faulted-in byte
    knobs: dict = field(default_factory=dict)  # this row's own knobs (sampled configurations)
    speed: dict | None = None   # the machine's speed next to this row's steps, time now / calibrated per group
    speed_adjusted_predicted_s: float | None = None  # the prediction at that speed (drift.speed_adjusted_seconds)

    @property
    def error_speed_adjusted(self) -> float | None:
        """The error of the prediction at the speed measured next to the steps: the model's own error,
        with the machine's drift since calibration taken out (an attribution, not a prediction)."""
        if self.measured_s is None or self.speed_adjusted_predicted_s is None:
            return None
        return (self.speed_adjusted_predicted_s - self.measured_s) / self.measured_s

    @property
    def error(self) -> float | None:
        """Signed relative error of the prediction, (predicted - measured) / measured."""
        if self.measured_s is None:
            return None
        return (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def unpriced_fault_s(self) -> float | None:
        """Seconds of the page faults the step took beyond those the model priced, at the profile's
        first-touch cost: ``(measured - modelled faulted bytes) x first_touch_s_per_byte``."""
        if None in (self.fresh_bytes, self.predicted_fresh_bytes, self.first_touch_s_per_byte):
            return None
        return (self.fresh_bytes - self.predicted_fresh_bytes) * self.first_touch_s_per_byte

    @property
    def error_with_measured_faults(self) -> float | None:
        """The error had the model priced the faults this step was measured to take: an attribution
        of the error (the faults depend on glibc's allocation history, which the model cannot know
        beforehand), not a prediction."""
        if self.measured_s is None or self.unpriced_fault_s is None:
            return None
        return (self.predicted_s + self.unpriced_fault_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class Validation:
    model: str
    hardware: str
    device: str
    threads: int | None
    clock: str
    stat: str
    knobs: dict
    rows: list[ValidationRow] = field(default_factory=list)
    fresh_process: bool = False
    #: the machine's speed on the profile's own calibration points, now / calibrated, measured
    #: before and after the steps (``perfmodel.calibrate.drift``); None for a profile without those points
    drift: dict | None = None
    retimed: int = 0   # timings taken again because their samples spread more than validate.SPREAD_LIMIT

    @property
    def mape(self) -> float | None:
        """Mean absolute percentage error over the widths that ran, as a fraction (0.05 = 5 %)."""
        errs = [abs(r.error) for r in self.rows if r.error is not None]
        return sum(errs) / len(errs) if errs else None

    @property
    def mape_with_measured_faults(self) -> float | None:
        """MAPE of ``ValidationRow.error_with_measured_faults``; None unless every row that ran has it."""
        ran = [r for r in self.rows if r.measured_s is not None]
        errs = [r.error_with_measured_faults for r in ran]
        return sum(map(abs, errs)) / len(errs) if errs and None not in errs else None

    @property
    def mape_speed_adjusted(self) -> float | None:
        """MAPE of ``ValidationRow.error_speed_adjusted``; None unless every row that ran has it."""
        errs = [r.error_speed_adjusted for r in self.rows if r.measured_s is not None]
        return sum(map(abs, errs)) / len(errs) if errs and None not in errs else None

    @property
    def mape_by_round(self) -> list[float]:
        """The MAPE each round alone would have reported (empty with one round)."""
        n = min((len(r.rounds_s) for r in self.rows if r.measured_s is not None), default=0)
        out = []
        for i in range(n if n > 1 else 0):
            errs = [abs(r.predicted_s - r.rounds_s[i]) / r.rounds_s[i] for r in self.rows if r.measured_s is not None]
            out.append(sum(errs) / len(errs))
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "hardware": self.hardware, "device": self.device, "threads": self.threads,
                "clock": self.clock, "stat": self.stat, "knobs": self.knobs,
                "fresh_process": self.fresh_process,
                "rows": [{"width": r.width, "predicted_s": r.predicted_s, "measured_s": r.measured_s,
                          "error": r.error, "spread": r.spread, "note": r.note,
                          "fresh_bytes_per_step": r.fresh_bytes,
                          "predicted_fresh_bytes_per_step": r.predicted_fresh_bytes,
                          "unpriced_fault_s": r.unpriced_fault_s,
                          "error_with_measured_faults": r.error_with_measured_faults,
                          "speed": r.speed, "error_speed_adjusted": r.error_speed_adjusted,
                          **({"knobs": r.knobs} if r.knobs else {}),
                          **({"rounds_s": list(r.rounds_s)} if len(r.rounds_s) > 1 else {})} for r in self.rows],
                "mape": self.mape, "mape_with_measured_faults": self.mape_with_measured_faults,
                "mape_speed_adjusted": self.mape_speed_adjusted,
                "drift": self.drift, "retimed": self.retimed,
                **({"mape_by_round": self.mape_by_round} if self.mape_by_round else {})}
