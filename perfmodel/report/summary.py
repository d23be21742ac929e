"""Section: the question, the inputs, the answer and the provenance."""
from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from .. import __version__
from ..total import law_task_note
from ..units import fmt_seconds
from .blocks import Facts, Heading, Note, Section
from .total_time import optimum, optimum_table


def question(ctx) -> str:
    hws = ", ".join(h.name for h in ctx.hardware)
    if ctx.plans:
        return (f"Question: how long does training {ctx.inputs.model} to convergence on a dataset of "
                f"D={ctx.dataset_size:g} take on {hws}, and which width and parallel layout finishes soonest?")
    return f"Question: how long does one training step of {ctx.inputs.model} take on {hws}, across widths?"


def uncertainty_sentence(ctx, best: dict) -> str:
    """The 80 % interval and the chance that this width is the fastest, and how far the law extrapolates."""
    out = ""
    if best.get("total_time_lo80_s") is not None:
        out += (f" 80% interval {fmt_seconds(best['total_time_lo80_s'])} to {fmt_seconds(best['total_time_hi80_s'])} "
                f"(median {fmt_seconds(best['total_time_median_s'])}); this width is the fastest in "
                f"{100 * best['p_fastest']:.0f}% of the joint draws of the step law and the time-per-step error.")
    else:
        out += " No interval: the step law file has no parameter draws (refit it with perfmodel steps fit)."
    plan = ctx.plans.get(best["hardware"])
    u = getattr(plan, "uncertainty", None) or {}
    x = dict(u.get("extrapolation") or {})
    if best.get("extrapolation_params_x") is not None:
        x["params_x"] = best["extrapolation_params_x"]
    from ..steps.uncertainty import WARN_EXTRAPOLATION
    if x.get("params_x") and max(x["params_x"], x.get("dataset_x") or 0) > WARN_EXTRAPOLATION:
        out += (f" Warning: for this width the step law is extrapolated {x['params_x']:.0f}× beyond the largest "
                f"parameter count and {x['dataset_x']:.0f}× beyond the largest dataset it was measured on; "
                "treat the total as a guess.")
    elif x.get("params_x"):
        out += f" The law extrapolates {x['params_x']:.3g}× in parameters and {x['dataset_x']:.3g}× in data."
    return out


def answer(ctx) -> str:
    best = optimum(ctx.layouts)
    if best is not None:
        text = (f"Answer: width {best['width']} ({best['params']:,} parameters) on {best['hardware']} with "
                f"layout {best['layout']} ({best['devices_used']} device{'s' if best['devices_used'] > 1 else ''}"
                f", global batch {best['batch']}): {fmt_seconds(best['total_time_s'])} in total = "
                f"{best['steps']:.4g} steps × {fmt_seconds(best['time_per_step_s'])} per step.")
        return text + uncertainty_sentence(ctx, best)
    if ctx.plans:
        return "Answer: no width fits in device memory under any layout searched."
    parts = []
    for h in ctx.hardware:
        c = ctx.sweep[h.name]
        fit = [i for i in range(len(ctx.widths)) if c["fits_in_memory"][i]]
        if fit:
            i = fit[-1]
            parts.append(f"{h.name}: {fmt_seconds(float(c['time_per_step_s'][i]))} per step at width "
                         f"{int(ctx.widths[i])}, the largest that fits")
        else:
            parts.append(f"{h.name}: no width fits in device memory")
    return ("Answer (time per step only; give --steps-law for total time): " + "; ".join(parts) + ".")


def _digest(path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unreadable"


def inputs_facts(ctx) -> Facts:
    i = ctx.inputs
    from ..architectures import get_spec
    resolved = get_spec(i.model).resolve(i.knobs)
    knobs = ", ".join(f"{k}={v}" for k, v in resolved.items() if v is not None)
    items = [("model", i.model), ("model settings", knobs), ("widths", ", ".join(str(int(w)) for w in ctx.widths)),
             ("hardware", ", ".join(h.name for h in ctx.hardware)), ("dtype", i.dtype), ("optimizer", i.optimizer)]
    if ctx.dataset_size is not None:
        items.append(("dataset size D", f"{ctx.dataset_size:g}"))
    if ctx.plans:
        from .layouts import devices_for
        items.append(("devices searched", ", ".join(f"{h.name}: {devices_for(ctx, h)}" for h in ctx.hardware)))
    items += [(f"--{k}", v) for k, v in i.files().items()]
    return Facts("summary-inputs", items)


def provenance_facts(ctx) -> Facts:
    import matplotlib
    items = [("perfmodel version", __version__)]
    profiles = list(ctx.hardware) + ([ctx.calibrated] if ctx.calibrated and ctx.calibrated not in ctx.hardware
                                     else [])
    for h in profiles:
        date = ((h.calibration or {}).get("provenance") or {}).get("date")
        items.append((f"profile {h.name}", f"{h.path or h.name}; "
                      + (f"calibrated {date}" if date else "calibrated (no date)" if h.calibrated
                         else "datasheet figures, not calibrated")))
    for k, v in ctx.inputs.files().items():
        if k != "profile":
            items.append((f"{k} file", f"{v} (sha256 {_digest(v)})"))
    if ctx.law is not None and not ctx.inputs.steps_law:
        items.append(("steps law file", f"{ctx.law_path} (shipped default, sha256 {_digest(ctx.law_path)})"))
    if ctx.runs_path and not ctx.inputs.runs:
        items.append(("runs file", f"{ctx.runs_path} (shipped with the law, sha256 {_digest(ctx.runs_path)})"))
    items += [("command line", ctx.inputs.command or "(called from Python)"),
              ("software", f"Python {platform.python_version()}, matplotlib {matplotlib.__version__}")]
    return Facts("summary-provenance", items)


def section(ctx) -> Section:
    s = Section("summary", "Summary")
    s.blocks += [Note(question(ctx)), Note(answer(ctx), answer=True)]
    if ctx.law is not None and ctx.law.model != ctx.inputs.model:
        s.blocks.append(Note(f"Caution: the steps law was fitted for {ctx.law.model!r}, not {ctx.inputs.model!r}."))
    if ctx.law is not None:
        task = law_task_note(ctx.law, ctx.inputs.model, ctx.inputs.knobs)
        if task:
            s.blocks.append(Note(f"Caution: {task}."))
    if ctx.plans and not ctx.law.b_noise and "batch" not in ctx.inputs.knobs:
        s.blocks.append(Note("Caution: the steps law has no batch term (no b_noise), so steps do not grow as the "
                             "batch shrinks and the layout search favours small batches. Fit a batch law "
                             "(runs at several batches) or fix the batch with --batch."))
    if ctx.plans:
        s.blocks.append(optimum_table(ctx))
    s.blocks += [Heading("Inputs"), inputs_facts(ctx), Heading("Provenance"), provenance_facts(ctx)]
    return s
