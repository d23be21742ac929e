"""Section: steps to converge versus model size: measured runs, the fitted law and its band.

The law is :class:`perfmodel.steps.law.StepLaw` (``S = a·D^γ·M^(−k) + b``,
batch law, plateau ``S ≥ e_min·D / (B·tokens_per_example)``).  Its band is the
envelope of the law with each parameter in turn moved to either end of its 95%
interval (``ci``), the others at their fitted values.  The law file keeps
intervals, not the joint bootstrap sample, so correlated parameters cannot be
moved together; moving all at once (the corners of the interval box) would
draw a band far wider than the fit's real uncertainty.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..steps.law import StepLaw, default_law_path, load_law
from .blocks import Facts, Figure, Note, Section, Table
from .figures import color, loglog, new_figure, to_data_uri
from .inputs import finite, read_csv_rows

LAW_PARAMS = ("a", "k", "gamma", "b")
BATCH_LAW_FACTS = ("s_min", "b_noise", "width", "dataset_size", "measure")
RUN_COLUMNS = ("model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min", "steps_to_converge",
               "min_val_loss", "epochs", "wall_s", "capped")


def find_law(model: str, path) -> tuple[StepLaw | None, str | None]:
    """(law, its path): ``path`` if given, else the law shipped for ``model`` if there is one."""
    if path:
        return load_law(path), str(path)
    default = default_law_path(model)
    return (load_law(default), str(default)) if default.is_file() else (None, None)


def shipped_runs(model: str) -> str | None:
    """The runs CSV shipped beside the default law (``<model>_runs.csv``), if any."""
    p = default_law_path(model).with_name(f"{model}_runs.csv")
    return str(p) if p.is_file() else None


def band(law: StepLaw, M, D):
    """(low, high) steps: each parameter in turn at its interval ends; None without intervals."""
    names = [p for p in (*LAW_PARAMS, "e_min") if len(law.ci.get(p) or ()) == 2 and getattr(law, p) is not None]
    if not names:
        return None
    curves = [dataclasses.replace(law, **{p: end}).steps(M, D) for p in names for end in law.ci[p]]
    return np.min(curves, axis=0), np.max(curves, axis=0)


def plateau_steps(law: StepLaw, D) -> float | None:
    """The plateau's floor at the reference batch: e_min passes over D."""
    if not law.e_min:
        return None
    return float(law.e_min * D / (law.batch_ref * law.tokens_per_example))


def load_runs(path) -> list[dict]:
    return read_csv_rows(path, "runs", required=("params", "dataset_size"))


def target(ctx) -> str:
    """The run column the law was fitted to (``steps_to_min`` or ``steps_to_converge``)."""
    return ctx.law.target if ctx.law is not None else "steps_to_converge"


def dataset_sizes(ctx) -> list[float]:
    sizes = {float(r["dataset_size"]) for r in ctx.runs or [] if finite(r.get("dataset_size"))}
    if ctx.dataset_size is not None:
        sizes.add(float(ctx.dataset_size))
    return sorted(sizes)


def law_table(ctx) -> Table:
    law = ctx.law
    rows = [[p, getattr(law, p), *((law.ci.get(p) or [None, None])[:2])] for p in LAW_PARAMS]
    for p in ("b_noise", "e_min", "batch_ref", "tokens_per_example"):
        if getattr(law, p) is not None:
            rows.append([p, getattr(law, p), *((law.ci.get(p) or [None, None])[:2])])
    return Table("table-law", f"Fitted law parameters ({ctx.law_path})", ["parameter", "value", "CI low", "CI high"],
                 rows)


def _runs_points(ax, runs, col, D, c) -> None:
    sub = [r for r in runs if finite(r.get("dataset_size")) and float(r["dataset_size"]) == D and finite(r.get(col))]
    for capped in (False, True):
        pts = [r for r in sub if bool(r.get("capped")) == capped]
        if pts:
            ax.plot([r["params"] for r in pts], [r[col] for r in pts], "o", color=c, ms=4,
                    mfc="white" if capped else c,
                    label=f"runs D={D:g}" + (" (capped: lower bound)" if capped else ""))


def plotted_runs(ctx) -> list[dict]:
    """Runs of the report's model at the law's reference batch (the batch its curves are drawn at)."""
    ref = ctx.law.batch_ref if ctx.law is not None else None
    return [r for r in ctx.runs or [] if r.get("model", ctx.inputs.model) == ctx.inputs.model
            and (ref is None or not finite(r.get("batch")) or float(r["batch"]) == float(ref))]


def steps_figure(ctx) -> Figure:
    law, runs, col = ctx.law, plotted_runs(ctx), target(ctx)
    fig, ax = new_figure(8.5, 4.2)
    M_all = [float(r["params"]) for r in runs if finite(r.get("params"))] + [float(p) for p in ctx.params]
    M = np.geomspace(min(M_all), max(M_all), 60)
    curve_rows, drawn = [], [float(r[col]) for r in runs if finite(r.get(col)) and r[col] > 0]
    for i, D in enumerate(dataset_sizes(ctx)):
        c = color(i)
        _runs_points(ax, runs, col, D, c)
        if law is None:
            continue
        curve = law.steps(M, D)
        drawn += [float(curve.min()), float(curve.max())]
        ax.plot(M, curve, "-", color=c, lw=1.5, label=f"law D={D:g}")
        env = band(law, M, D)
        if env is not None:
            ax.fill_between(M, env[0], env[1], color=c, alpha=0.15, lw=0)
        floor = plateau_steps(law, D)
        if floor is not None:
            ax.axhline(floor, ls=":", color=c, lw=1, label=f"plateau D={D:g}: {floor:.3g} steps")
        at = band(law, ctx.params, D)
        for j, m in enumerate(ctx.params):
            curve_rows.append([D, int(m), float(law.steps(m, D)), *((float(at[0][j]), float(at[1][j]))
                                                                     if at is not None else (None, None)), floor])
    if drawn:  # the band may reach far beyond the curves and runs: keep them in view
        ax.set_ylim(min(drawn) / 3, max(drawn) * 3)
    loglog(ax, "parameters (model size M)", col.replace("_", " "))
    ax.set_title(f"{ctx.inputs.model}: {col.replace('_', ' ')}" + (" (band: each parameter at its 95% CI ends)"
                                                                   if law is not None else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    tables = []
    if curve_rows:
        tables.append(Table("table-law-curve", "Law evaluated at the report's model sizes (reference batch)",
                            ["dataset size D", "params", "steps (law)", "band low", "band high", "plateau floor"],
                            curve_rows))
    if ctx.runs:
        cols = [c for c in RUN_COLUMNS if any(c in r for r in ctx.runs)]
        tables.append(Table.from_dicts("table-runs", f"Measured runs ({ctx.runs_path}; the plot shows "
                                       f"{len(runs)} at the law's batch)", ctx.runs, cols))
    return Figure("fig-steps", "Steps to converge versus model size", to_data_uri(fig),
                  "log-log plot of steps to converge against parameters, per dataset size", tables)


def facts(ctx) -> Facts:
    law = ctx.law
    items = [("law file", ctx.law_path), ("formula", law.formula), ("fitted to", law.target),
             ("runs in the fit", str(law.n_runs))]
    if law.heldout_error is not None:
        items.append(("held-out error", f"{law.heldout_error:.4g} (median |relative error| at the largest width)"))
    if law.provenance.get("task"):
        items.append(("measured on", str(law.provenance["task"])))
    if law.units:
        items.append(("units", ", ".join(f"{k}: {v}" for k, v in law.units.items())))
    if law.batch_law:
        bl = law.batch_law
        items.append(("batch law", ", ".join(f"{k}={bl[k]:.4g}" if finite(bl[k]) else f"{k}={bl[k]}"
                                              for k in BATCH_LAW_FACTS if k in bl)))
    return Facts("law-facts", items)


def section(ctx) -> Section | None:
    if ctx.law is None and not ctx.runs:
        return None
    s = Section("steps", "Steps to converge")
    if ctx.law is not None:
        s.blocks += [facts(ctx), law_table(ctx)]
    else:
        s.blocks.append(Note("No steps law given (--steps-law): measured runs only."))
    s.blocks.append(steps_figure(ctx))
    return s
