"""Section: training diagnostics versus width (``perfmodel diagnose --json`` output).

The plot is :func:`perfmodel.diagnostics.plots.plot_diagnostics`; its rows and
the width trends (log-log and semilog slopes with intervals) are the tables.
"""
from __future__ import annotations

from ..diagnostics.plots import PANELS, plot_diagnostics
from .blocks import Figure, Section, Table
from .figures import to_data_uri
from .inputs import finite

MAX_PANELS = 9


def panel_columns(rows) -> list[str] | None:
    """None (the plot's own panels) when a known diagnostic is present, else the numeric columns."""
    if any(finite(r.get(c)) for c, _, _ in PANELS for r in rows):
        return None
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [c for c in cols if c not in ("width", "seed") and any(finite(r.get(c)) for r in rows)][:MAX_PANELS]


def trends_table(key: str, caption: str, trends) -> Table | None:
    """``{metric: {fit: {slope, lo, hi, ...}}}`` as one row per (metric, fit)."""
    if not isinstance(trends, dict) or not trends:
        return None
    rows = []
    for name, v in trends.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            rows += [{"metric": name, "fit": fit, **x} for fit, x in v.items()]
        elif isinstance(v, dict):
            rows.append({"metric": name, **v})
        else:
            rows.append({"metric": name, "value": v})
    return Table.from_dicts(key, caption, rows, list(dict.fromkeys(k for r in rows for k in r)))


def section(ctx) -> Section | None:
    d = ctx.diagnostics
    if d is None or not d["rows"]:
        return None
    rows = d["rows"]
    cols = panel_columns(rows)
    if cols == []:
        return None
    table = Table.from_dicts("table-diagnostics", "Diagnostics per run (width, seed)", rows,
                             list(dict.fromkeys(k for r in rows for k in r)))
    s = Section("diagnostics", "Training diagnostics")
    s.blocks.append(Figure("fig-diagnostics", "Diagnostics versus width",
                           to_data_uri(plot_diagnostics(rows, cols)),
                           "diagnostic statistics plotted against model width, one box per width", [table]))
    for key, caption, trends in (
            ("table-diagnostics-trends", "Trends with width (slope and 95% interval)", d.get("trends")),
            ("table-diagnostics-depth", "Confusion at init versus depth (slope and 95% interval)",
             (d.get("depth_sweep") or {}).get("trends"))):
        t = trends_table(key, caption, trends)
        if t is not None:
            s.blocks.append(t)
    return s
