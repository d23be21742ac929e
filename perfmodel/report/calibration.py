"""Section: a profile's calibration tables (GEMM efficiency, bandwidth, per-op overhead)."""
from __future__ import annotations

import math

import numpy as np

from ..cost import rates
from .blocks import Facts, Figure, Note, Section, Table
from .figures import color, new_figure, to_data_uri

MAX_HEATMAP_DTYPES = 3
#: provenance fields shown up front; all of them are in the folded table
MAIN_PROVENANCE = ("date", "device", "kind", "source", "command", "torch", "threads", "plan", "base_profile")


def pure_time_s(hw, t: float) -> float:
    """Measured time minus the standalone dispatch cost, as :mod:`perfmodel.cost.rates` credits it."""
    return max(t - rates.dispatch_s(hw), rates.PURE_FLOOR * t)


def gemm_rows(hw) -> list[dict]:
    """Calibration GEMM points: achieved FLOP/s (2 FLOP per multiply-add), measured and modelled efficiency."""
    out = []
    for g in hw.calibration.get("gemm", []):
        dt, b = g.get("dtype", "fp32"), g.get("batch", 1)
        flops = 2.0 * g["m"] * g["n"] * g["k"] * b
        peak = hw.peak_tflops.get(dt)
        achieved = flops / pure_time_s(hw, g["time_s"])
        ta, tb = bool(g.get("trans_a")), bool(g.get("trans_b"))
        model = None if not peak else rates.hot_gemm_efficiency(hw, dt, g["m"], g["n"], g["k"], tb, ta) \
            if g.get("hot") else rates.gemm_efficiency(hw, dt, g["m"], g["n"], g["k"], b, tb, ta)
        out.append({"dtype": dt, "m": g["m"], "n": g["n"], "k": g["k"], "batch": b,
                    "trans_a": bool(g.get("trans_a", False)), "trans_b": bool(g.get("trans_b", False)),
                    "hot": bool(g.get("hot", False)), "time_s": g["time_s"], "achieved_TFLOPs": achieved / 1e12,
                    "efficiency": achieved / (peak * 1e12) if peak else None,
                    "model_efficiency": None if model is None else float(model)})
    return out


def _log2_bins(values):
    e = np.floor(np.log2(np.asarray(values, float))).astype(int)
    return e, np.arange(e.min(), e.max() + 1)


def gemm_figure(hw) -> Figure | None:
    rows = [r for r in gemm_rows(hw) if r["efficiency"] is not None]
    if not rows:
        return None
    dtypes = sorted({r["dtype"] for r in rows}, key=lambda d: -sum(r["dtype"] == d for r in rows))
    dtypes = dtypes[:MAX_HEATMAP_DTYPES]
    fig, axes = new_figure(4.2 * len(dtypes) + 0.6, 3.8, ncols=len(dtypes))
    axes = np.atleast_1d(axes)
    for ax, dt in zip(axes, dtypes, strict=True):
        sub = [r for r in rows if r["dtype"] == dt]
        ye, ybins = _log2_bins([r["m"] * r["n"] for r in sub])
        xe, xbins = _log2_bins([r["k"] for r in sub])
        grid = np.full((ybins.size, xbins.size), np.nan)
        for yi in range(ybins.size):
            for xi in range(xbins.size):
                cell = [r["efficiency"] for r, a, b in zip(sub, ye, xe, strict=True)
                        if a == ybins[yi] and b == xbins[xi]]
                if cell:
                    grid[yi, xi] = float(np.median(cell))
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0,
                       vmax=max(1.0, float(np.nanmax(grid))), interpolation="nearest")
        if grid.size <= 120:
            for (yi, xi), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(xi, yi, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v < 0.6 else "black")
        step_x = max(1, -(-xbins.size // 6))
        step_y = max(1, -(-ybins.size // 8))
        ax.set_xticks(range(0, xbins.size, step_x), [f"$2^{{{b}}}$" for b in xbins[::step_x]])
        ax.set_yticks(range(0, ybins.size, step_y), [f"$2^{{{b}}}$" for b in ybins[::step_y]])
        ax.set_xlabel("k (reduction dimension)")
        ax.set_ylabel("m x n (output elements)")
        ax.set_title(f"{dt}: median fraction of peak ({len(sub)} shapes)")
        ax.grid(False)
    fig.colorbar(im, ax=list(axes), shrink=0.9, label="efficiency (fraction of datasheet peak)")
    table = Table.from_dicts("table-cal-gemm", "Calibrated GEMM points: efficiency = 2mnk·batch / "
                             "((time − dispatch) · peak); model_efficiency = the calibrated interpolation",
                             gemm_rows(hw))
    return Figure("fig-cal-gemm", "GEMM efficiency over shapes", to_data_uri(fig),
                  "heat maps of measured GEMM efficiency binned by output size and reduction size", [table])


def bandwidth_figure(hw) -> Figure | None:
    mem = hw.calibration.get("memory", [])
    if not mem:
        return None
    rows = [{"op": m["op"], "bytes": m["bytes"], "time_s": m["time_s"],
             "bandwidth_GBps": m["bytes"] / pure_time_s(hw, m["time_s"]) / 1e9} for m in mem]
    fig, ax = new_figure(7.0, 3.4)
    for i, op in enumerate(sorted({r["op"] for r in rows})):
        sub = sorted((r for r in rows if r["op"] == op), key=lambda r: r["bytes"])
        ax.plot([r["bytes"] for r in sub], [r["bandwidth_GBps"] for r in sub], "o-", ms=3, color=color(i), label=op)
    ax.axhline(hw.memory_bandwidth_GBps, ls="--", color="black", lw=1,
               label=f"datasheet {hw.memory_bandwidth_GBps:g} GB/s")
    ax.set_xscale("log")
    ax.set_xlabel("bytes moved per kernel")
    ax.set_ylabel("achieved bandwidth (GB/s)")
    ax.set_title("memory bandwidth versus transfer size")
    ax.legend()
    table = Table.from_dicts("table-cal-memory", "Calibrated memory points", rows)
    return Figure("fig-cal-bandwidth", "Bandwidth versus size", to_data_uri(fig),
                  "achieved memory bandwidth against bytes moved", [table])


def overhead_figure(hw) -> Figure | None:
    ov = hw.calibration.get("overhead_us") or {}
    items = [(k, float(v)) for k, v in ov.items() if isinstance(v, (int, float)) and math.isfinite(v)]
    if not items:
        return None
    fig, ax = new_figure(7.0, 0.8 + 0.3 * len(items))
    y = np.arange(len(items))
    ax.barh(y, [v for _, v in items], color=color(0))
    ax.axvline(hw.kernel_launch_overhead_us, ls="--", color="black", lw=1,
               label=f"datasheet launch overhead {hw.kernel_launch_overhead_us:g} us")
    ax.set_yticks(y, [k for k, _ in items])
    ax.invert_yaxis()
    ax.set_xlabel("overhead per kernel; *_call: per training step (us)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    table = Table("table-cal-overhead", "Calibrated per-op overhead", ["op kind", "overhead (us)"],
                  [list(i) for i in items])
    return Figure("fig-cal-overhead", "Per-op overhead", to_data_uri(fig),
                  "bar chart of measured per-kernel overhead by op kind, and the per-step call costs", [table])


def _generic_table(key: str, caption: str, rows) -> Table | None:
    if not rows or not all(isinstance(r, dict) for r in rows):
        return None
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return Table.from_dicts(key, caption, rows, cols)


def section(ctx) -> Section | None:
    hw = ctx.calibrated
    if hw is None:
        return None
    cal = hw.calibration
    prov = cal.get("provenance") or {}
    s = Section("calibration", f"Calibration: {hw.name}")
    main = [(k, _plain(prov[k])) for k in MAIN_PROVENANCE if k in prov]
    s.blocks.append(Facts("calibration-provenance", [("profile", hw.path or hw.name), *main]))
    if len(prov) > len(main):
        s.blocks.append(Table("table-cal-provenance", "Calibration provenance, every field", ["field", "value"],
                              [[str(k), _plain(v)] for k, v in prov.items()]))
    blocks = [gemm_figure(hw), bandwidth_figure(hw), overhead_figure(hw),
              _generic_table("table-cal-rnn", "Calibrated RNN layers (seconds per layer over all steps)",
                             cal.get("rnn")),
              _generic_table("table-cal-conv", "Calibrated convolutions (seconds)", cal.get("conv"))]
    s.blocks += [b for b in blocks if b is not None]
    if len(s.blocks) == 1:
        s.blocks.append(Note("The calibration holds no GEMM, memory, overhead, RNN or convolution tables."))
    return s


def _plain(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_plain(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v)
    return str(v)
