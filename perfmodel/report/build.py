"""Assemble the report: load the inputs once, build each section that has data, render HTML."""
from __future__ import annotations

import datetime as _dt

from . import calibration, diagnostics, step_law, step_time, summary, total_time, validation
from .blocks import Section
from .context import ReportContext, load_context
from .figures import style
from .html import render_page, write_atomic
from .inputs import ReportInputs

#: section builders in page order; each returns a Section or None (no input for it)
SECTIONS = (summary.section, step_time.section, step_law.section, total_time.section, calibration.section,
            validation.section, diagnostics.section)


def build_sections(ctx: ReportContext) -> list[Section]:
    with style():
        return [s for s in (build(ctx) for build in SECTIONS) if s is not None]


def _inputs(model: str, kwargs: dict) -> ReportInputs:
    for k in ("hardware", "widths", "breakdown_widths"):
        v = kwargs.get(k)
        if isinstance(v, str):
            kwargs[k] = (v,) if k == "hardware" else v
        if v is not None and not isinstance(v, str):
            kwargs[k] = tuple(v)
    if kwargs.get("knobs") is None:
        kwargs.pop("knobs", None)
    return ReportInputs(model, **{k: v for k, v in kwargs.items() if v is not None})


def build_report(model: str, **kwargs) -> str:
    """The report as one HTML string.

    Keywords are the fields of :class:`~perfmodel.report.inputs.ReportInputs`:
    ``hardware`` (names or paths), ``widths``, ``breakdown_widths``, ``knobs``,
    ``dtype``, ``optimizer``, ``steps_law``, ``runs``, ``dataset_size``,
    ``devices``, ``profile``, ``validation``, ``kernels``, ``diagnostics``,
    ``command`` (shown as provenance).
    """
    inputs = kwargs.pop("inputs", None) or _inputs(model, kwargs)
    ctx = load_context(inputs)
    sections = build_sections(ctx)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return render_page(f"perfmodel report: {inputs.model}",
                       f"Training time = steps to converge × time per step · generated {now}", sections,
                       f"perfmodel · self-contained report (no scripts, no network) · {now}")


def write_report(path, model: str, **kwargs):
    """Check ``path`` (:func:`perfmodel.outputs.check_output`: never over an input), build the report,
    write it atomically; returns the path."""
    from .. import hardware as hardware_mod
    from ..outputs import check_output
    hws = kwargs.get("hardware") or ()
    hws = [hws] if isinstance(hws, str) else list(hws)
    files = [kwargs.get(k) for k in ("steps_law", "runs", "profile", "validation", "kernels", "diagnostics")]
    check_output(path, [*hws, *files, *(hardware_mod.load(h).path for h in hws)], "report")
    return write_atomic(path, build_report(model, **kwargs))
