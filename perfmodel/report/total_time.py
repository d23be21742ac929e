"""Section: total training time = steps × time per step, per parallel layout, with the optimum.

One panel per hardware profile (shared time axis): the fastest layout found
by the layout search at each width, the best data-parallel-only layout for
each data-parallel degree (tp = pp = 1), and a star at the optimum.
"""
from __future__ import annotations

import math

import numpy as np

from ..units import fmt_seconds
from .blocks import Figure, Note, Section, Table
from .figures import color, loglog, new_figure, to_data_uri
from .layouts import devices_for

MAX_PANELS = 3
TOTAL_COLUMNS = ("hardware", "width", "params", "layout", "devices_used", "dp", "tp", "pp", "m", "micro_batch",
                 "batch", "steps", "time_per_step_s", "comm_time_s", "total_time_s", "total_time_median_s",
                 "total_time_lo80_s", "total_time_hi80_s", "p_fastest", "extrapolation_params_x", "fits")


def optimum(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r.get("fits") and r.get("total_time_s") is not None
          and math.isfinite(r["total_time_s"])]
    return min(ok, key=lambda r: r["total_time_s"]) if ok else None


def dp_rows(ctx) -> list[dict]:
    """Best total time per (hardware, width, data-parallel degree) with tp = pp = 1."""
    out = []
    for hw_name, p in ctx.plans.items():
        params = {r.width: r.params for r in p.rows}
        for w, curve in p.dp_curve.items():
            out += [{"hardware": hw_name, "width": w, "params": params[w], "dp": dp, "total_time_s": t}
                    for dp, t in curve.items() if t is not None and math.isfinite(t)]
    return out


def total_figure(ctx) -> Figure:
    names = list(ctx.plans)[:MAX_PANELS]
    fig, axes = new_figure(4.3 * len(names) + 0.4, 4.4, ncols=len(names))
    axes = np.atleast_1d(axes)
    dps = dp_rows(ctx)
    for ax, hw_name in zip(axes, names, strict=True):
        rows = sorted((r for r in ctx.layouts if r["hardware"] == hw_name and r["fits"]), key=lambda r: r["params"])
        degrees = sorted({r["dp"] for r in dps if r["hardware"] == hw_name})
        for j, dp in enumerate(degrees):
            sub = sorted((r for r in dps if r["hardware"] == hw_name and r["dp"] == dp), key=lambda r: r["params"])
            ax.plot([r["params"] for r in sub], [r["total_time_s"] for r in sub], "--", lw=1, color=color(j + 1),
                    label=f"data parallel dp={dp}")
        ax.plot([r["params"] for r in rows], [r["total_time_s"] for r in rows], "-o", ms=3, lw=2, color="black",
                label="fastest layout")
        band = [r for r in rows if r.get("total_time_lo80_s") is not None]
        if band:
            ax.fill_between([r["params"] for r in band], [r["total_time_lo80_s"] for r in band],
                            [r["total_time_hi80_s"] for r in band], color="black", alpha=0.12, lw=0,
                            label="80% interval")
        best = optimum(rows)
        title = f"{hw_name}, up to {devices_for(ctx, next(h for h in ctx.hardware if h.name == hw_name))} devices"
        if best is not None:
            ax.plot([best["params"]], [best["total_time_s"]], "*", ms=16, color="gold", mec="black", zorder=5,
                    clip_on=False,
                    label="optimum")
            title += f"\noptimum w={best['width']} {best['layout']}: {fmt_seconds(best['total_time_s'])}"
        loglog(ax, "parameters (model size M)", "total training time (s)")
        ax.set_title(title, fontsize=8)
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(3 * len(axes), len(handles)),
               frameon=False, fontsize=7)
    if len(axes) > 1:
        lo = min(a.get_ylim()[0] for a in axes)
        hi = max(a.get_ylim()[1] for a in axes)
        for a in axes:
            a.set_ylim(lo, hi)
    cols = [c for c in TOTAL_COLUMNS if any(c in r for r in ctx.layouts)]
    tables = [Table.from_dicts("table-total", "Fastest layout per width (total = steps × time per step)",
                               ctx.layouts, cols),
              Table.from_dicts("table-total-dp", "Best data-parallel-only layout per degree (tp = pp = 1)", dps,
                               ["hardware", "width", "params", "dp", "total_time_s"])]
    return Figure("fig-total", "Total time versus model size", to_data_uri(fig),
                  "log-log plot of total training time against parameters per layout, optimum starred", tables)


def optimum_table(ctx) -> Table:
    rows = []
    for hw_name in ctx.plans:
        best = optimum([r for r in ctx.layouts if r["hardware"] == hw_name])
        if best is not None:
            rows.append([hw_name, best["width"], best["params"], best["layout"], best["batch"], best["steps"],
                         best["time_per_step_s"], best["total_time_s"]])
    return Table("table-optimum", "Fastest width and layout per hardware",
                 ["hardware", "width", "params", "layout", "batch", "steps", "time per step (s)", "total time (s)"],
                 rows)


def section(ctx) -> Section | None:
    if not ctx.layouts:
        return None
    law = ctx.law
    s = Section("total-time", "Total training time")
    s.blocks += [Note(f"Total time = steps to converge (law at D={ctx.dataset_size:g}, at each layout's global "
                      f"batch B{'' if law.b_noise else '; the law has no batch term'}) × time per step of the "
                      "layout (perfmodel.parallel). Layouts: dp × tp × pp devices, m micro-batches; the search "
                      "picks the fastest per width."),
                 total_figure(ctx), optimum_table(ctx)]
    return s
