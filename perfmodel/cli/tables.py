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
