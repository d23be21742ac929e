"""matplotlib helpers: figures without pyplot, rendered to ``data:`` URIs.

Figures are :class:`matplotlib.figure.Figure` objects drawn by the backend
that ``savefig`` picks for the format (SVG here, Agg for PNG); pyplot's global
state and the user's interactive backend are never touched.  SVG output is
deterministic (fixed hash salt, no date).
"""
from __future__ import annotations

import base64
import io

import matplotlib
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

#: one colour per series, in order (matplotlib's tab10)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
#: colours of the parts of a step, shared by every stacked bar chart
PART_COLORS = {"fwd": "#4c78a8", "bwd_data": "#f58518", "bwd_weight": "#e45756", "optimizer": "#72b7b2",
               "compute": "#54a24b", "memory": "#b279a2", "overhead": "#bab0ac"}
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
         "svg.hashsalt": "perfmodel-report", "svg.fonttype": "path"}


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def style():
    """Context manager with the report's rcParams; draw every figure inside it."""
    return matplotlib.rc_context(STYLE)


def new_figure(width_in: float = 7.0, height_in: float = 3.8, ncols: int = 1, nrows: int = 1):
    """A figure and its axes (a single Axes when ncols = nrows = 1)."""
    fig = MplFigure(figsize=(width_in, height_in), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=True)


#: log axes spanning less than this ratio get 1-2-5 ticks in plain numbers, longer ones decades
SHORT_LOG_RANGE = 1000


def log_axis(axis) -> None:
    """Readable log ticks on an x or y ``axis``: decades, or 1-2-5 steps when the range is short."""
    lo, hi = sorted(axis.get_view_interval())
    short = lo > 0 and hi / lo < SHORT_LOG_RANGE
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
    if short:
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if 1 <= v < 1e6 else f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def loglog(ax, xlabel: str, ylabel: str) -> None:
    """Log-log axes with labels; call after plotting so the tick choice sees the data range."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    log_axis(ax.xaxis)
    log_axis(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def to_data_uri(fig, fmt: str = "svg") -> str:
    """Render ``fig`` as a base64 ``data:`` URI (SVG, or PNG at 110 dpi through Agg)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None})
            mime = "image/svg+xml"
        else:
            fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
            mime = "image/png"
    _release(fig)
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _release(fig) -> None:
    """Close a figure that came from pyplot (e.g. a library plot function); plain figures need nothing."""
    import sys
    plt = sys.modules.get("matplotlib.pyplot")
    number = getattr(fig, "number", None)
    if plt is not None and number is not None and plt.fignum_exists(number):
        plt.close(fig)
