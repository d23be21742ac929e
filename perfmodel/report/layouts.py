"""Total time per width and parallel layout: the layout search of :mod:`perfmodel.parallel.search`.

For every hardware profile, :func:`perfmodel.parallel.search.plan` finds the
fastest (dp, tp, pp, micro-batches, batch) per width on ``devices`` devices
(default: one node of that profile) with total = law.steps(M, D, B) × time per
step.  ``--batch`` fixes the global batch; otherwise the search chooses it.
"""
from __future__ import annotations

from ..parallel.layout import Layout
from ..parallel.search import SearchSpace, plan
from ..parallel.step import predict_parallel

LAYOUT_KEYS = ("dp", "tp", "pp", "m")
#: the communication parts of a parallel step (fields of perfmodel.parallel.step.StepEstimate)
COMM_PARTS = {"tp_comm_s": "tensor-parallel collectives", "pp_p2p_s": "pipeline sends",
              "dp_exposed_s": "data-parallel all-reduce (exposed)"}


def layout_name(r: dict) -> str:
    return " ".join(f"{k}={r[k]}" for k in LAYOUT_KEYS if r.get(k) is not None)


def devices_for(ctx, hw) -> int:
    return int(ctx.inputs.devices or hw.devices_per_node)


def _space(ctx, hw) -> SearchSpace:
    batch = ctx.inputs.knobs.get("batch")
    return SearchSpace(devices=devices_for(ctx, hw), batches=(int(batch),) if batch is not None else None)


def plans(ctx) -> dict:
    """hardware name -> :class:`perfmodel.parallel.search.Plan` (empty without a law and a dataset size)."""
    if ctx.law is None or ctx.dataset_size is None:
        return {}
    return {hw.name: plan(ctx.scenario(hw), ctx.widths, _space(ctx, hw), ctx.dataset_size, ctx.law)
            for hw in ctx.hardware}


def layout_rows(plans_by_hw: dict) -> list[dict]:
    """One row per (hardware, width): the fastest layout, or why there is none."""
    out = []
    for hw_name, p in plans_by_hw.items():
        for row in p.rows:
            r = row.to_dict()
            out.append({"hardware": hw_name, "width": r["width"], "params": r["params"],
                        "layout": layout_name(r) if r["fits"] else r.get("why", "none"),
                        **{k: r.get(k) for k in ("devices_used", "dp", "tp", "pp", "m", "micro_batch", "batch",
                                                 "steps", "time_per_step_s", "comm_time_s", "total_time_s",
                                                 "total_time_median_s", "p_fastest", "extrapolation_params_x")},
                        **dict(zip(("total_time_lo80_s", "total_time_hi80_s"),
                                   r.get("total_time_interval_80") or (None, None), strict=True)),
                        "fits": r["fits"]})
    return out


def step_parts(ctx, row: dict) -> dict[str, float]:
    """Seconds of the fastest layout's step: device work and each communication part."""
    hw = next(h for h in ctx.hardware if h.name == row["hardware"])
    # the plan may leave devices idle (a smaller dp can be faster): the layout runs on its own devices_used
    p = predict_parallel(ctx.scenario(hw), row["width"], Layout(row["dp"], row["tp"], row["pp"], row["m"]),
                         row["batch"], row["devices_used"])
    comm = {name: float(getattr(p.step, k)) for k, name in COMM_PARTS.items()}
    return {"device work": p.time_per_step_s - sum(comm.values()), **comm}
