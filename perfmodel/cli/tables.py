"""Text views of a :class:`~perfmodel.predict.Prediction` (the CLI's human output)."""
from __future__ import annotations

from tabulate import tabulate

from ..predict import Prediction
from ..units import fmt_bytes, fmt_seconds, fmt_si


def _group_table(groups: dict, total_s: float, first: str) -> str:
    rows = [[name, fmt_seconds(g["time_s"]), f"{100 * g['time_s'] / total_s:.1f}%", fmt_si(g["flops"], "FLOP"),
             fmt_bytes(g["bytes"]), max(("compute", "memory", "overhead"), key=lambda b: g[f"{b}_s"])]
            for name, g in groups.items()]
    return tabulate(rows, headers=[first, "time", "share", "FLOPs", "bytes", "bound"], disable_numparse=True)


def prediction_text(p: Prediction) -> str:
    knobs = ", ".join(f"{k}={v}" for k, v in p.config.items() if k != "width")
    m = p.memory
    head = [
        f"{p.model} width={p.width} ({knobs}) on {p.hardware}, {p.dtype}, {p.optimizer}",
        f"  parameters        {p.params:,}",
        f"  time per step     {fmt_seconds(p.time_per_step_s)}",
        f"  FLOPs per step    {fmt_si(p.flops_per_step, 'FLOP')}   bytes per step {fmt_bytes(p.bytes_per_step)}",
        f"  achieved          {fmt_si(p.achieved_flops, 'FLOP/s')} = {100 * p.utilization:.1f}% of "
        f"{fmt_si(p.peak_flops, 'FLOP/s')} peak",
        f"  memory            {fmt_bytes(m.total_bytes)} of {fmt_bytes(p.memory_capacity_bytes)} "
        f"({'fits' if p.fits_in_memory else 'DOES NOT FIT'}): weights {fmt_bytes(m.weights_bytes)}, "
        f"grads {fmt_bytes(m.gradients_bytes)}, optimizer {fmt_bytes(m.optimizer_bytes)}, "
        f"activations {fmt_bytes(m.activations_bytes)}",
    ]
    return "\n".join(head + ["", _group_table(p.by_layer(), p.time_per_step_s, "layer"), "",
                             _group_table(p.by_phase(), p.time_per_step_s, "phase")])


# -- parallel layouts, plans and what-if (perfmodel.parallel, perfmodel.total) ------------------
def _opt_seconds(x) -> str:
    return "-" if x is None else fmt_seconds(x)


def parallel_text(d: dict) -> str:
    """The layout part of ``perfmodel predict --dp/--tp/--pp``: a dict from :func:`perfmodel.total.predict_total`."""
    lay = d["layout"]
    lines = [
        f"parallel layout   dp={lay['dp']} tp={lay['tp']} pp={lay['pp']} micro-batches={lay['micro_batches']} "
        f"on {d['devices']} devices: global batch {d['batch']}, micro-batch {d['micro_batch']}",
        f"  time per step     {fmt_seconds(d['time_per_step_s'])} (pipeline {fmt_seconds(d['pipeline_s'])}, "
        f"bubble {100 * d['bubble_fraction']:.1f}%)",
        f"  communication     {fmt_seconds(d['comm_time_s'])} on the critical path: tensor-parallel "
        f"{fmt_seconds(d['tp_comm_s'])}, pipeline sends {fmt_seconds(d['pp_p2p_s'])}, gradient all-reduce "
        f"{fmt_seconds(d['dp_allreduce_s'])} of which exposed {fmt_seconds(d['dp_exposed_s'])}",
        f"  memory per device {fmt_bytes(d['per_device_memory_bytes'])} "
        f"({'fits' if d['fits_in_memory'] else 'DOES NOT FIT'}): weights {fmt_bytes(d['memory_weights_bytes'])}, "
        f"grads {fmt_bytes(d['memory_gradients_bytes'])}, optimizer {fmt_bytes(d['memory_optimizer_bytes'])}, "
        f"activations {fmt_bytes(d['memory_activations_bytes'])}",
        f"  stages            {' | '.join(','.join(s) for s in d['stage_units'])}",
    ]
    if d.get("persistent_rnn_active"):
        lines.append("  persistent RNN    recurrent weights fit on chip: persistent kernels in use")
    if "total_time_s" in d:
        lines.append(f"  steps             {d['steps']:,.0f} (law for {d.get('steps_law_model')}, dataset "
                     f"{d['dataset_size']:.4g})")
        lines.append(f"  total time        {fmt_seconds(d['total_time_s'])}")
        if d.get("total_time_interval_80"):
            lo, hi = d["total_time_interval_80"]
            s_lo, s_hi = d["steps_interval_80"]
            lines.append(f"  80% interval      total {fmt_seconds(d['total_time_median_s'])} [{fmt_seconds(lo)}, "
                         f"{fmt_seconds(hi)}], steps {d['steps_median']:,.0f} [{s_lo:,.0f}, {s_hi:,.0f}] "
                         f"(time per step {100 * d['step_time_mape']:.0f}% MAPE: {d['step_time_mape_source']})")
        elif d.get("intervals"):
            lines.append(f"  80% interval      {d['intervals']}")
        x = d.get("extrapolation") or {}
        if x.get("params_x") and x["params_x"] == x["params_x"]:
            lines.append(f"  extrapolation     {x['params_x']:.3g}x the largest measured parameter count, "
                         f"{x['dataset_x']:.3g}x the largest measured dataset")
        for key in ("steps_law_note", "steps_law_task_note"):
            if d.get(key):
                lines.append(f"  note              {d[key]}")
    return "\n".join(lines)


def plan_text(p) -> str:
    """A :class:`perfmodel.parallel.search.Plan` as a table, the fastest width, and DP's limit."""
    rows = []
    for r in p.rows:
        if not r.fits:
            rows.append([r.width, f"{r.params:,}", f"MARKED: {r.why}", "", "", "", "", "", "", "", "", "", ""])
            continue
        rows.append([r.width, f"{r.params:,}", f"{r.dp}x{r.tp}x{r.pp}", r.m, r.micro_batch, r.batch, f"{r.steps:,.0f}",
                     fmt_seconds(r.time_per_step_s), fmt_seconds(r.total_time_s), _interval(r),
                     f"{100 * r.p_fastest:.0f}%" if r.p_fastest is not None else "n/a",
                     _opt_seconds(r.best_dp_only_total_s),
                     r.dp_stops_paying_at if r.dp_stops_paying_at is not None else "-"])
    head = (f"{p.model} on {p.devices} x {p.hardware}, dataset {p.dataset_size:.4g}; every layout dp x tp x pp "
            f"(m micro-batches) that fits, fastest per width")
    table = tabulate(rows, headers=["width", "params", "dp x tp x pp", "m", "micro", "batch", "steps", "time/step",
                                    "total", "total: median [80%]", "P(fastest)", "DP-only total",
                                    "DP stops paying at dp*"], disable_numparse=True)
    searched = [r for r in p.rows if r.fits and r.zero is not None]
    if searched:   # plan --search-options: the options each width's layout uses
        table += "\noptions: " + "; ".join(
            f"{r.width}: zero={r.zero} recompute={r.recompute} sp={'on' if r.sequence_parallel else 'off'} "
            f"V={r.virtual_stages} ep={r.ep}" for r in searched)
    best = p.fastest
    u = p.uncertainty or {}
    chance = (f"; P(fastest) {100 * best.p_fastest:.0f}%, total {_interval(best)}"
              if best and best.p_fastest is not None else
              f"; no interval ({u['intervals']})" if best and u.get("intervals") else "")
    likely = u.get("most_likely_fastest_width")
    tail = (f"fastest: width {best.width} in {fmt_seconds(best.total_time_s)} with dp={best.dp} "
            f"tp={best.tp} pp={best.pp} m={best.m} batch={best.batch}{chance}"
            + (f" (most often fastest over the draws: width {likely})" if likely not in (None, best.width) else "")
            if best else "no width has a layout that fits")
    if u.get("step_time_mape") is not None:
        tail += (f"\nintervals: step-law draws x time per step with a {100 * u['step_time_mape']:.0f}% MAPE "
                 f"({u['step_time_mape_source']})")
    note = p.law.get("steps_law_note")
    from ..parallel.search import DP_PAYING_GAIN
    foot = (f"* the data-parallel degree past which doubling it (tp = pp = 1) cuts total time by less than "
            f"{100 * DP_PAYING_GAIN:.0f}%: more steps past the critical batch eat the shorter steps")
    notes = [f"note: {n}" for n in (note, p.law.get("steps_law_task_note"), p.law.get("batch_note")) if n]
    return "\n".join([head, table, tail, foot] + notes)


def _interval(r) -> str:
    if r.total_time_interval_80 is None:
        return "n/a"
    lo, hi = r.total_time_interval_80
    return f"{fmt_seconds(r.total_time_median_s)} [{fmt_seconds(lo)}, {fmt_seconds(hi)}]"


def whatif_text(r: dict) -> str:
    """Break-even speedups from :func:`perfmodel.parallel.whatif.break_even`."""
    res = list(r["break_even"])
    rows = []
    for i, w in enumerate(r["widths"]):
        cells = []
        for k in res:
            f = r["break_even"][k][i]
            cells.append("-" if i == 0 else ("already" if f == 1.0 else
                                             (f"{f:.3g}x" if f is not None else f">{r['max_factor']:g}x")))
        iv = (r.get("baseline_total_interval_80") or [None] * len(r["widths"]))[i]
        p = (r.get("p_fastest") or [None] * len(r["widths"]))[i]
        rows.append([w, _opt_seconds(r["baseline_total_s"][i]),
                     f"{fmt_seconds(r['baseline_total_median_s'][i])} [{fmt_seconds(iv[0])}, {fmt_seconds(iv[1])}]"
                     if iv else "n/a", f"{100 * p:.0f}%" if p is not None else "n/a", *cells])
    head = (f"{r['model']} on {r['devices']} x {r['hardware']}: speedup of one resource needed for each width "
            f"to train faster than every smaller width (fastest now: width {r['fastest_width']})")
    return "\n".join([head, tabulate(rows, headers=["width", "total now", "total: median [80%]", "P(fastest)", *res],
                                     disable_numparse=True)])
