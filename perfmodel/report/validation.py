"""Section: predicted versus measured time per step, and kernel-level errors.

Errors are relative, ``(predicted - measured) / measured``, recomputed here
from each row's two times so the plots, tables and MAPE agree; MAPE is the
mean of ``|error|`` in percent.
"""
from __future__ import annotations

import numpy as np

from .blocks import Figure, Note, Section, Table
from .figures import color, loglog, new_figure, to_data_uri
from .inputs import finite

#: scatter plots with more points than this are embedded as a bitmap inside the SVG (smaller file)
RASTER_POINTS = 300


def relative_error(predicted, measured) -> float:
    return (predicted - measured) / measured


def mape(rows) -> float:
    errs = [abs(relative_error(r["predicted_s"], r["measured_s"])) for r in rows]
    return 100 * float(np.mean(errs)) if errs else float("nan")


def _identity(ax, values) -> None:
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], "-", color="black", lw=1, label="y = x")
    ax.fill_between([lo, hi], [lo / 1.25, hi / 1.25], [lo * 1.25, hi * 1.25], color="gray", alpha=0.15,
                    label="±25%")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")


def _usable(rows):
    return [r for r in rows if finite(r.get("predicted_s")) and finite(r.get("measured_s"))
            and r["measured_s"] > 0 and r["predicted_s"] > 0]


def step_figure(ctx) -> Figure | None:
    rows = _usable(ctx.validation["rows"])
    if not rows:
        return None
    fig, ax = new_figure(5.6, 4.4)
    groups = sorted({str(r.get("hardware", "")) for r in rows})
    for i, g in enumerate(groups):
        sub = [r for r in rows if str(r.get("hardware", "")) == g]
        ax.plot([r["measured_s"] for r in sub], [r["predicted_s"] for r in sub], "o", color=color(i),
                label=g or "measured runs")
        for r in sub:
            ax.annotate(f"w={r['width']}", (r["measured_s"], r["predicted_s"]), fontsize=7,
                        xytext=(4, -8), textcoords="offset points")
    _identity(ax, [r[k] for r in rows for k in ("predicted_s", "measured_s")])
    loglog(ax, "measured time per step (s)", "predicted time per step (s)")
    where = " ".join(str(ctx.validation[k]) for k in ("model", "hardware", "device") if ctx.validation.get(k))
    ax.set_title(f"{where}: MAPE {mape(rows):.1f}% over {len(rows)} widths".lstrip(": "))
    ax.legend(loc="best")
    cols = ["width", *(["hardware"] if groups != [""] else []), "predicted_s", "measured_s",
            *(["spread"] if any(finite(r.get("spread")) for r in rows) else [])]
    table = Table("table-validation", f"Predicted versus measured time per step (MAPE {mape(rows):.1f}%)",
                  [*cols, "error (%)"],
                  [[r.get(c) for c in cols] + [100 * relative_error(r["predicted_s"], r["measured_s"])]
                   for r in rows])
    return Figure("fig-validation", "Predicted versus measured time per step", to_data_uri(fig),
                  "scatter of predicted against measured time per step with the y = x line", [table])


def kernel_figure(ctx) -> Figure | None:
    rows = _usable(ctx.kernels["rows"])
    if not rows:
        return None
    kinds = list(dict.fromkeys(str(r.get("kind", "kernel")) for r in rows))
    fig, (ax, bx) = new_figure(9.0, 4.0, ncols=2)
    for i, kind in enumerate(kinds):
        sub = [r for r in rows if str(r.get("kind", "kernel")) == kind]
        ax.plot([r["measured_s"] for r in sub], [r["predicted_s"] for r in sub], "o", ms=3, alpha=0.7,
                color=color(i), label=f"{kind} (MAPE {mape(sub):.1f}%)", rasterized=len(rows) > RASTER_POINTS)
    _identity(ax, [r[k] for r in rows for k in ("predicted_s", "measured_s")])
    loglog(ax, "measured kernel time (s)", "predicted kernel time (s)")
    ax.legend(loc="best")
    ax.set_title(f"{len(rows)} kernels" + (f" on {ctx.kernels['hardware']}" if ctx.kernels.get("hardware") else ""))
    errs = [[100 * relative_error(r["predicted_s"], r["measured_s"]) for r in rows
             if str(r.get("kind", "kernel")) == k] for k in kinds]
    bx.boxplot(errs, showfliers=True, flierprops={"rasterized": len(rows) > RASTER_POINTS})
    bx.set_xticks(range(1, len(kinds) + 1), kinds)
    bx.axhline(0, color="black", lw=1)
    bx.set_ylabel("relative error (%)")
    bx.set_title("error per kernel kind")
    cols = [c for c in ("kind", "dtype", "shape", "phase", "bound") if any(c in r for r in rows)]
    table = Table("table-kernels", "Predicted versus measured kernel times",
                  [*cols, "predicted_s", "measured_s", "error (%)"],
                  [[r.get(c) for c in cols] + [r["predicted_s"], r["measured_s"],
                                               100 * relative_error(r["predicted_s"], r["measured_s"])]
                   for r in rows])
    summary = Table("table-kernels-mape", "MAPE per kernel kind", ["kind", "kernels", "MAPE (%)"],
                    [[k, len(e), float(np.mean(np.abs(e)))] for k, e in zip(kinds, errs, strict=True)])
    return Figure("fig-kernels", "Kernel-level errors", to_data_uri(fig),
                  "scatter of predicted against measured kernel times and box plots of errors per kind",
                  [summary, table])


def section(ctx) -> Section | None:
    if ctx.validation is None and ctx.kernels is None:
        return None
    s = Section("validation", "Validation")
    s.blocks.append(Note("Relative error = (predicted − measured) / measured; MAPE = mean |error|."))
    blocks = [step_figure(ctx) if ctx.validation else None, kernel_figure(ctx) if ctx.kernels else None]
    s.blocks += [b for b in blocks if b is not None]
    skipped = [r for r in (ctx.validation or {}).get("rows", []) if r not in _usable(ctx.validation["rows"])]
    if skipped:
        s.blocks.append(Note("Widths not measured: " + "; ".join(
            f"{r.get('width')}: {r.get('note') or 'no measured time'}" for r in skipped)))
    unmodelled = (ctx.kernels or {}).get("unmodelled") or []
    if unmodelled:
        s.blocks.append(Table.from_dicts("table-kernels-unmodelled", "Kernel rows not modelled (with the reason)",
                                         unmodelled, list(dict.fromkeys(k for r in unmodelled for k in r))))
    if len(s.blocks) == 1:
        s.blocks.append(Note("The validation files hold no rows with positive predicted and measured times."))
    return s
