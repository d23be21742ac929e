"""Figure for the report: each diagnostic versus width, a box per width across seeds.

``plot_diagnostics(rows)`` takes the ``rows`` of ``perfmodel diagnose --json``
and returns a :class:`matplotlib.figure.Figure` (no pyplot, no global state),
one panel per diagnostic present in the rows, with the log-log slope and its
95% interval in the panel title.  matplotlib is imported inside the function.
"""
from __future__ import annotations

import math

from .trends import loglog_slope

# column, panel title, log y axis
PANELS = (
    ("direct_distance", "direct distance ||W_T - W_0||", True),
    ("relative_distance", "relative distance ||W_T - W_0|| / ||W_0||", True),
    ("path_length", "path length sum ||W_t+1 - W_t||", True),
    ("step_size", "mean step size, all weights", True),
    ("step_size_output", "mean step size, output layer", True),
    ("step_size_hidden", "mean step size, hidden layer", True),
    ("angle", "mean angle A_s (rad)", False),
    ("confusion_cos", "confusion at init (-min cos)", False),
    ("diversity", "gradient diversity Delta_S at init", True),
)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_diagnostics(rows, columns=None, ncols: int = 3):
    """Box plot (across seeds) of each diagnostic at each width; returns the Figure.

    ``columns`` picks panels by column name (default: those of :data:`PANELS`
    present in ``rows``).  Widths sit at log2 positions; y is logarithmic for
    sizes and linear for angles and cosines.  The angle panel marks pi/2.
    """
    from matplotlib.figure import Figure
    known = {c: (t, lg) for c, t, lg in PANELS}
    cols = columns or [c for c, _, _ in PANELS if any(_finite(r.get(c)) for r in rows)]
    if not cols:
        raise ValueError("no diagnostic columns with finite values in rows")
    ncols = max(1, min(ncols, len(cols)))
    nrows = math.ceil(len(cols) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, col in zip(axes, cols, strict=False):
        title, log_y = known.get(col, (col, False))
        by_width: dict[int, list[float]] = {}
        for r in rows:
            if _finite(r.get(col)) and _finite(r.get("width")):
                by_width.setdefault(r["width"], []).append(float(r[col]))
        widths = sorted(by_width)
        pos = [math.log2(w) for w in widths]
        data = [by_width[w] for w in widths]
        if widths:
            ax.boxplot(data, positions=pos, widths=0.45, manage_ticks=False,
                       medianprops={"color": "C1"}, flierprops={"markersize": 2})
            for p, vals in zip(pos, data, strict=True):
                ax.plot([p] * len(vals), vals, ".", color="C0", ms=4, alpha=0.7)
            ax.set_xticks(pos, [str(w) for w in widths])
            ax.set_xlim(pos[0] - 0.6, pos[-1] + 0.6)
        flat = [v for vals in data for v in vals]
        if log_y and flat and min(flat) > 0 and max(flat) >= 4 * min(flat):  # log only if it spans
            ax.set_yscale("log")
        if col.startswith("angle"):
            ax.axhline(math.pi / 2, color="0.5", lw=0.8, ls="--")
        fit = loglog_slope([w for w, vals in zip(widths, data, strict=True) for _ in vals],
                           [v for vals in data for v in vals])
        if _finite(fit["slope"]):
            ci = f" [{fit['lo']:.2f}, {fit['hi']:.2f}]" if _finite(fit["lo"]) else ""
            title += f"\nlog-log slope {fit['slope']:.2f}{ci}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("width", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(cols):]:
        ax.set_visible(False)
    return fig
