"""What ``perfmodel steps fit`` prints and records: provenance, the ``--json`` summary, the text report."""
from __future__ import annotations

import datetime
import math
from pathlib import Path

import numpy as np

from .law import StepLaw, jsonable


def provenance(command: str, runs_path: str | Path, law: StepLaw) -> dict:
    return {"command": command, "runs_file": str(runs_path), "n_runs": law.n_runs,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "fitted_by": "perfmodel.steps.fit.fit_law"}


def summary(law: StepLaw) -> dict:
    """The ``--json`` view: parameters, intervals, held-out error, run count, batch law (NaN as null)."""
    return jsonable({"model": law.model, "a": law.a, "k": law.k, "gamma": law.gamma, "b": law.b,
            "e_min": law.e_min, "batch_ref": law.batch_ref, "b_noise": law.b_noise, "ci": law.ci,
            "heldout_error": law.heldout_error, "n_runs": law.n_runs, "target": law.target,
            "n_capped": law.diagnostics.get("n_capped"), "batch_law": law.batch_law,
            "residuals": law.diagnostics.get("residuals"), "form": law.form, "epochs_min": law.epochs_min,
            "cv": law.cv, "coverage_80": law.coverage_80, "sigma_log": law.sigma_log, "tau_extrap": law.tau_extrap,
            "measured_range": law.measured_range, "n_draws": len(law.draws["k"]) if law.draws else 0})


def format_report(law: StepLaw) -> str:
    def ci(p):
        lo_hi = law.ci.get(p)
        return f"  [95% CI {lo_hi[0]:.3g}, {lo_hi[1]:.3g}]" if lo_hi else ""

    from .forms import get_form
    lines = [f"{law.model}: steps ({law.target}) = {get_form(law.form).formula} at batch {law.batch_ref:g}, "
             f"from {law.n_runs} runs ({law.diagnostics.get('n_capped', 0)} capped, "
             f"{law.diagnostics.get('capped_treatment')})"]
    t = law.measured_task or {}
    if t:
        knobs = ", ".join(f"{k}={v}" for k, v in sorted((t.get("knobs") or {}).items()))
        lines.append(f"  measured on: {knobs or 'default knobs'}; corpus {t.get('corpus') or 'built-in generator'}; "
                     f"{t.get('optimizer', '?')} lr {t.get('lr', '?')} (a plan at other knobs is told so)")
    lines += cv_lines(law)
    for p in ("a", "k", "gamma", "b", "epochs_min", "e_min"):
        if getattr(law, p) is not None and (p != "epochs_min" or law.form.startswith("epochs")):
            lines.append(f"  {p:10s} = {getattr(law, p):.4g}{ci(p)}")
    if law.diagnostics.get("plateau"):
        lines.append(f"  plateau {law.diagnostics['plateau']}")
    k_lo = law.ci.get("k", [law.k])[0]
    lines.append(f"  steps fall with width: {'yes' if k_lo > 0 else 'not significantly' if law.k > 0 else 'no'}"
                 f" (k {'> 0 at 95%' if k_lo > 0 else 'interval includes 0 or below'})")
    h = law.diagnostics.get("heldout", {})
    lines.append(f"  held-out (width {h['width']:g} predicted from smaller widths): median |error| "
                 f"{100 * law.heldout_error:.1f}%" if law.heldout_error is not None
                 else f"  held-out check skipped: {h.get('skipped')}")
    lines += interval_lines(law)
    res = law.diagnostics.get("residuals", {})
    lines.append(f"  residuals log(observed/predicted), uncapped runs: "
                 f"rms {res.get('rms_log_residual') or math.nan:.3f}; "
                 f"capped runs predicted below their lower bound: {res.get('capped_below_bound')}"
                 if res.get("rms_log_residual") is not None else "  residuals: no uncapped runs")
    for row in res.get("per_width", []):
        flag = "  <- systematic" if row["systematic"] else ""
        trend = (f"slope vs log D {row['slope_vs_logD']:+.3f} (se {row['se']:.3f})"
                 if row["se"] is not None and np.isfinite(row["se"]) else "slope vs log D n/a")
        lines.append(f"    width {row['width']:g} ({row['n']} runs): "
                     f"mean {row['mean_log_residual']:+.3f}, {trend}{flag}")
    bl = law.batch_law
    if bl:
        c = bl["ci"].get("b_noise")
        lines.append(f"  batch law at width {bl['width']:g}, D {bl['dataset_size']:g}: S_min {bl['s_min']:.4g}, "
                     f"B_noise {bl['b_noise']:.4g}" + (f" [95% CI {c[0]:.3g}, {c[1]:.3g}]" if c else "")
                     + (f"; measured B_simple {bl['b_simple_init']:.3g} at step 0, {bl['b_simple_training']:.3g} "
                        f"pooled over training; diversity bound B_S {bl['b_diversity_init']:.3g} -> "
                        f"{bl['b_diversity_training']:.3g} (bounded by the probe size, "
                        f"{'/'.join(map(str, bl.get('probe_examples', [])))} examples)"
                        if "b_simple_training" in bl else ""))
    return "\n".join(lines)


def cv_lines(law: StepLaw) -> list[str]:
    """Each form's cross-validated extrapolation error and the one chosen."""
    forms = (law.cv or {}).get("forms") or {}
    if not forms:
        return []
    out = ["  forms, by leave-widest-width-out extrapolation (median |predicted/observed - 1|):"]
    for name, f in forms.items():
        err = f"{100 * f['error']:.1f}%" if f.get("error") is not None else "n/a (too few widths)"
        folds = ", ".join(f"without {'+'.join(f'{w:g}' for w in x['held_out_widths'])}: "
                          f"{100 * x['median_abs_rel_error']:.1f}%" for x in f["folds"])
        mark = "  <- chosen" if name == law.cv.get("chosen") else ""
        out.append(f"    {name:12s} ({f['n_params']} params) {err}" + (f"  [{folds}]" if folds else "") + mark)
    out.append(f"  chosen: {law.cv.get('chosen')} ({law.cv.get('rule')})")
    return out


def interval_lines(law: StepLaw) -> list[str]:
    if not law.draws:
        return ["  prediction intervals: unavailable (no bootstrap draws; use --bootstrap >= 20)"]
    out = [f"  prediction intervals: {len(law.draws['k'])} parameter draws, run-to-run sd of log steps "
           f"{law.sigma_log:.3f}, extrapolation sd {law.tau_extrap:.3f} per e-fold beyond the measured range"]
    c = law.coverage_80
    if c:
        out.append(f"  80% interval coverage, leave-widest-out and largest-D-out: {100 * c['coverage']:.0f}% of "
                   f"{c['n']} held-out runs in {len(c.get('folds', []))} folds "
                   f"(95% interval: {100 * c['coverage_95']:.0f}%)")
        for f in c.get("folds", []):
            what = ("without width " + "+".join(f"{w:g}" for w in f["held_out_widths"]) if "held_out_widths" in f
                    else "without D " + "+".join(f"{d:g}" for d in f["held_out_dataset_sizes"]))
            out.append(f"    {what}: {f['inside_80']} of {f['n']} inside the 80% interval ({f['form']} form)")
    return out
