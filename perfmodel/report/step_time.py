"""Section: time per step versus model size, with the breakdown by phase and by bound.

Phases and bounds are those of the one-device step (``Prediction.by_phase``
/ ``by_bound``: each op counted under the largest of its compute, memory and
overhead times).  When a steps law gives a layout search, a third panel
splits the fastest layout's step into device work and communication.
"""
from __future__ import annotations

import numpy as np

from ..units import fmt_seconds
from .blocks import Figure, Note, Section, Table
from .figures import PART_COLORS, color, loglog, new_figure, to_data_uri
from .layouts import COMM_PARTS, step_parts

PHASES = ("fwd", "bwd_data", "bwd_weight", "optimizer")
BOUNDS = ("compute", "memory", "overhead")
LAYOUT_PARTS = ("device work", *COMM_PARTS.values())
LAYOUT_COLORS = dict(zip(LAYOUT_PARTS, ("#54a24b", "#9d755d", "#e45756", "#ff9da6"), strict=False))


def curve_table(ctx) -> Table:
    rows = []
    for hw in ctx.hardware:
        c = ctx.sweep[hw.name]
        for i, w in enumerate(ctx.widths):
            rows.append([hw.name, int(w), int(c["params"][i]), float(c["flops_per_step"][i]),
                         float(c["time_per_step_s"][i]), float(c["compute_s"][i]), float(c["memory_s"][i]),
                         float(c["overhead_s"][i]), int(c["memory_bytes"][i]), bool(c["fits_in_memory"][i])])
    return Table("table-step-time", "Predicted time per step on one device",
                 ["hardware", "width", "params", "FLOP per step", "time per step (s)", "compute (s)",
                  "memory (s)", "overhead (s)", "memory footprint (bytes)", "fits in memory"], rows)


def curve_figure(ctx) -> Figure:
    fig, ax = new_figure(7.0, 3.6)
    for i, hw in enumerate(ctx.hardware):
        c = ctx.sweep[hw.name]
        fits = np.asarray(c["fits_in_memory"], bool)
        ax.plot(c["params"], c["time_per_step_s"], "-", color=color(i), label=hw.name)
        ax.plot(c["params"][fits], c["time_per_step_s"][fits], "o", color=color(i), ms=4)
        if (~fits).any():
            ax.plot(c["params"][~fits], c["time_per_step_s"][~fits], "o", mfc="white", color=color(i), ms=5)
    loglog(ax, "parameters (model size M)", "time per step (s)")
    ax.set_title(f"{ctx.inputs.model}, batch {ctx.config.get('batch')}, one device "
                 "(hollow: does not fit in device memory)")
    ax.legend(loc="upper left")
    return Figure("fig-step-time", "Time per step versus model size",
                  to_data_uri(fig), f"log-log plot of time per step against parameters for "
                  f"{', '.join(h.name for h in ctx.hardware)}", [curve_table(ctx)])


def breakdown(ctx) -> dict:
    """(hardware, width) -> {"phase": {...}, "bound": {...}, "layout": {...} or None} in seconds."""
    out = {}
    for hw in ctx.hardware:
        for w in ctx.breakdown_widths:
            p = ctx.breakdowns[(hw.name, w)]
            phase, bound = p.by_phase(), p.by_bound()
            best = ctx.fastest_layout(hw.name, w)
            out[(hw.name, w)] = {
                "phase": {k: phase.get(k, {}).get("time_s", 0.0) for k in PHASES},
                "bound": {k: bound.get(k, {}).get("time_s", 0.0) for k in BOUNDS},
                "layout": None if best is None else step_parts(ctx, best), "layout_name": best and best["layout"]}
    return out


def _stack(ax, parts, bars, kind, names, colors) -> None:
    y = np.arange(len(bars))
    left = np.zeros(len(bars))
    totals = np.array([sum((parts[b][kind] or {}).values()) for b in bars])
    for name in names:
        secs = np.array([(parts[b][kind] or {}).get(name, 0.0) for b in bars])
        share = np.divide(100 * secs, totals, out=np.zeros_like(secs), where=totals > 0)
        ax.barh(y, share, left=left, color=colors[name], label=name, height=0.7)
        left += share
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("share of the step (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=True, fontsize=7)


def breakdown_figure(ctx) -> Figure:
    parts = breakdown(ctx)
    bars = list(parts)
    with_layout = any(parts[b]["layout"] for b in bars)
    panels = [("phase", PHASES, PART_COLORS), ("bound", BOUNDS, PART_COLORS)]
    if with_layout:
        panels.append(("layout", LAYOUT_PARTS, LAYOUT_COLORS))
    fig, axes = new_figure(3.6 * len(panels) + 1.2, 3.8 + 0.12 * len(bars), ncols=len(panels))
    y = np.arange(len(bars))
    for ax, (kind, names, colors) in zip(axes, panels, strict=True):
        _stack(ax, parts, bars, kind, names, colors)
        if kind == "phase":
            ax.set_yticks(y, [f"{h}\nw={w}" for h, w in bars])
            ax.set_title("one device, by phase")
        elif kind == "bound":
            ax.set_yticks(y, [fmt_seconds(sum(parts[b]["bound"].values())) for b in bars])
            ax.set_title("one device, by bound (labels: step time)")
        else:
            ax.set_yticks(y, [f"{parts[b]['layout_name']}\n{fmt_seconds(sum(parts[b]['layout'].values()))}"
                              if parts[b]["layout"] else "no layout found" for b in bars], fontsize=7)
            ax.set_title("fastest layout: work vs communication")
    rows = []
    for (h, w), p in parts.items():
        for kind in ("phase", "bound", "layout"):
            if p[kind]:
                total = sum(p[kind].values())
                rows += [[h, w, kind, p["layout_name"] if kind == "layout" else "1 device", name, s,
                          100 * s / total if total else 0.0] for name, s in p[kind].items()]
    table = Table("table-step-breakdown", "Time per step by phase, by bound and (fastest layout) by communication",
                  ["hardware", "width", "grouping", "layout", "part", "time (s)", "share (%)"], rows)
    return Figure("fig-step-breakdown", "Where a step's time goes, for chosen widths", to_data_uri(fig),
                  "stacked bars of the share of step time per phase, per bound and per communication kind", [table])


def section(ctx) -> Section:
    s = Section("step-time", "Time per step")
    s.blocks += [Note("Predicted by the op-level roofline model on one device; each op counts under its bound, "
                      "the largest of its compute, memory and overhead times. Communication appears with the "
                      f"layout search (needs a steps law). dtype {ctx.inputs.dtype}, optimizer "
                      f"{ctx.inputs.optimizer}."),
                 curve_figure(ctx), breakdown_figure(ctx)]
    return s
