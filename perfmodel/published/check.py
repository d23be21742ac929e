"""``perfmodel check published``: predicted vs measured for every row of the shipped runs table.

Each row (:mod:`.runs`) is predicted with :mod:`perfmodel.parallel` and the prediction converted
into the unit the row measured, with the source's own FLOP convention for TFLOP/s and MFU
(SOURCES.md)::

    iteration_s           predicted time per step
    tokens_per_s_per_gpu  B x s / (T x n)
    tflops_per_gpu        F / (T x n) / 1e12
    mfu                   F / (T x n x peak)     (peak: the source's dense 16-bit peak)

    narayanan_eq3   F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h))       Narayanan et al. 2021, eq. (3)
                                                                     (hardware FLOPs: recompute counted)
    megatron_model  F = 72 B s l h^2 (1 + s/(6h) + V/(12 l h))       Korthikanti et al. 2022, sec. 6.3 (model
                                                                     FLOPs); Megatron-LM's
                                                                     num_floating_point_operations for a GPT
                                                                     with 4h MLP and as many K/V heads as heads
    bloom_8ps       F = 8 P s B                                      bigscience tr11 README "Calculate TFLOPs"
                                                                     (P = the model size the row gives)

with B the global batch, s the sequence, l layers (``n`` in the code), h hidden, V vocabulary, T seconds,
n GPUs.
The signed error is (predicted - measured) / measured; MAPE is the mean of its absolute value, over
all modelled rows and per source.  Fields a row leaves open are chosen as the fastest that fits.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from .. import hardware as hardware_mod
from ..errors import PerfmodelError
from ..parallel.device import device_pass
from ..parallel.layout import Layout, check_layout
from ..parallel.options import RECOMPUTE_MODES, ParallelOptions
from ..parallel.pipeline import partition
from ..parallel.step import check_layout_options, evaluate, virtual_stage_choices
from ..scenario import Scenario
from .runs import RunSetup, load_rows, setup

#: micro-batches tried where a row leaves the micro-batch open
MICRO_BATCH_CHOICES = (1, 2, 4, 8, 16)


def flops_per_iteration(convention: str, run: RunSetup) -> float:
    """F of the module docstring for ``run``'s global batch."""
    k, b = run.knobs, run.batch
    s, n, h, v = k["seq_len"], k["layers"], run.width, k["vocab"]
    if convention == "narayanan_eq3":
        return 96 * b * s * n * h ** 2 * (1 + s / (6 * h) + v / (16 * n * h))
    if convention == "megatron_model":
        return 72 * b * s * n * h ** 2 * (1 + s / (6 * h) + v / (12 * n * h))
    if convention == "bloom_8ps":
        return 8 * run.params_b * 1e9 * s * b
    raise ValueError(f"unknown FLOP convention {convention!r}")


def to_unit(run: RunSetup, time_s: float) -> float:
    """The predicted time per step in the row's measured unit (module docstring)."""
    if run.measured_unit == "iteration_s":
        return time_s
    if run.measured_unit == "tokens_per_s_per_gpu":
        return run.batch * run.knobs["seq_len"] / (time_s * run.gpus)
    f = flops_per_iteration(run.convention, run)
    if run.measured_unit == "tflops_per_gpu":
        return f / (time_s * run.gpus) / 1e12
    return f / (time_s * run.gpus * run.peak_tflops * 1e12)


@dataclass
class RunResult:
    run: RunSetup
    predicted: float | None = None
    error: float | None = None            # signed, a fraction
    fits: bool | None = None
    time_per_step_s: float | None = None
    memory_bytes: float | None = None
    capacity_bytes: float | None = None
    chosen: dict = field(default_factory=dict)
    reason: str | None = None             # not modelled

    def to_dict(self) -> dict:
        r = self.run
        out = {"id": r.id, "source": r.source}
        if self.reason:
            return {**out, "not_modelled": self.reason}
        u = r.measured_unit
        measured = {} if u is None else {f"predicted_{u}": self.predicted, f"measured_{u}": r.measured}
        return {**out, "unit": u or "memory_only", **measured,
                "error_fraction": self.error, "fits_predicted": self.fits, "fits_measured": r.fits_measured,
                "time_per_step_s": self.time_per_step_s, "per_device_memory_bytes": self.memory_bytes,
                "memory_capacity_bytes": self.capacity_bytes, "chosen": self.chosen, "assumed": r.assumed}


def _candidates(run: RunSetup, hw):
    """(tp, pp, micro_batch, recompute, virtual_stages) tuples the row allows."""
    lay, k, o = run.layout, run.knobs, run.options
    dp, layers = lay["dp"], k["layers"]
    if lay["tp"] is None or lay["pp"] is None:
        mp = run.gpus // dp
        splits = [(t, mp // t) for t in (1, 2, 4, 8) if t <= hw.devices_per_node and mp % t == 0
                  and layers % (mp // t) == 0 and k["heads"] % t == 0]
    else:
        splits = [(lay["tp"], lay["pp"])]
    per_replica = run.batch // dp
    micros = [lay["micro_batch"]] if lay["micro_batch"] else [x for x in MICRO_BATCH_CHOICES if per_replica % x == 0]
    modes = RECOMPUTE_MODES if "recompute" in run.open_fields else (o["recompute"],)
    for (tp, pp), mb, rc in itertools.product(splits, micros, modes):
        vs = virtual_stage_choices(layers, pp) if "virtual_stages" in run.open_fields else [o["virtual_stages"]]
        for v in vs:
            yield tp, pp, mb, rc, v


def predict_run(run: RunSetup, hw=None) -> RunResult:
    """Predict one row (the fastest fitting choice of its open fields), on ``hw`` if given, else on the
    shipped profile the row names."""
    if run.reason:
        return RunResult(run, reason=run.reason)
    hw = hardware_mod.load(run.hardware) if hw is None else hw
    if run.cluster:   # the source's own network (runs.CLUSTERS)
        hw = replace(hw, **run.cluster)
    base = Scenario("transformer", hw, run.knobs, run.dtype, "adam", ParallelOptions(**run.options))
    dp, units_cache, stage_cache, best, last_error = run.layout["dp"], {}, {}, None, None
    for tp, pp, mb, rc, v in _candidates(run, hw):
        s = replace(base, options=replace(base.options, recompute=rc, virtual_stages=v))
        layout = Layout(dp, tp, pp, run.batch // (dp * mb))
        try:
            s.check()
            check_layout(layout, run.batch, run.gpus)
            check_layout_options(s, layout)
        except PerfmodelError as e:
            last_error = str(e)
            continue
        if (tp, mb) not in units_cache:
            units_cache[(tp, mb)] = device_pass(s, np.array([run.width]), mb, tp)
        units = units_cache[(tp, mb)]
        if not units.valid[0] or pp > len(units.names):
            last_error = f"tp={tp}, pp={pp} cannot split the model"
            continue
        if (tp, mb, pp, rc) not in stage_cache:
            stage_cache[(tp, mb, pp, rc)] = partition(units, pp, rc, s.options.recompute_every)
        r = evaluate(stage_cache[(tp, mb, pp, rc)], s, dp, tp, layout.micro_batches, units.steps, units.cyclic).at(0)
        key = (not r.fits_in_memory, r.time_per_step_s)
        if best is None or key < best[0]:
            best = (key, r, {"tp": tp, "pp": pp, "micro_batch": mb, "recompute": rc, "virtual_stages": v})
    if best is None:
        return RunResult(run, reason=last_error or "no layout the row allows")
    _, r, chosen = best
    chosen = {k: chosen[k] for k in chosen if _is_open(k, run)}
    if run.measured is None:   # out of memory in the source: memory only
        return RunResult(run, None, None, bool(r.fits_in_memory), r.time_per_step_s, r.per_device_memory_bytes,
                         hw.memory_capacity_bytes, chosen)
    pred = to_unit(run, r.time_per_step_s)
    return RunResult(run, pred, (pred - run.measured) / run.measured, bool(r.fits_in_memory), r.time_per_step_s,
                     r.per_device_memory_bytes, hw.memory_capacity_bytes, chosen)


def _is_open(name: str, run: RunSetup) -> bool:
    return name in run.open_fields or (name in ("tp", "pp") and "tp x pp" in run.open_fields)


def check_published(rows: list[dict] | None = None, ids=None) -> dict:
    """Every row (or those in ``ids``): results, MAPE overall and per source (fractions), fits."""
    names = set(hardware_mod.available())
    rows = load_rows() if rows is None else rows
    results = [predict_run(setup(r, names)) for r in rows if ids is None or r["id"] in ids]
    done = [x for x in results if x.reason is None and x.error is not None]
    oom = [x for x in results if x.reason is None and not x.run.fits_measured]
    by_source: dict = {}
    for x in done:
        by_source.setdefault(x.run.source, []).append(abs(x.error))
    ran = [x for x in done if x.run.fits_measured]
    return {"results": results,
            "mape_fraction": {"overall": float(np.mean([abs(x.error) for x in done])) if done else None,
                              "by_source": {k: float(np.mean(v)) for k, v in sorted(by_source.items())}},
            "rows_by_source": {k: len(v) for k, v in sorted(by_source.items())},
            "fits": {"ran": len(ran), "predicted_to_fit": sum(bool(x.fits) for x in ran),
                     "not_fitting": [x.run.id for x in ran if not x.fits],
                     "out_of_memory_in_source": len(oom), "predicted_not_to_fit": sum(not x.fits for x in oom),
                     "fitting_but_oom": [x.run.id for x in oom if x.fits]},
            "not_modelled": [x.run.id for x in results if x.reason]}


def to_json_dict(report: dict) -> dict:
    return {**{k: v for k, v in report.items() if k != "results"},
            "rows": [x.to_dict() for x in report["results"]]}


def report_text(report: dict) -> str:
    """Per row: predicted, measured, signed error, fits; then MAPE per source and overall."""
    lines = [f"{'run':52s} {'unit':21s} {'predicted':>10s} {'measured':>10s} {'error':>7s}  fits  open choices; "
             "assumed trainer defaults"]
    for x in report["results"]:
        r = x.run
        if x.reason:
            lines.append(f"{r.id:52s} not modelled: {x.reason}")
            continue
        fits = ("yes" if x.fits else "NO") + ("" if r.fits_measured else " (OOM in source)")
        chosen = " ".join(f"{k}={v}" for k, v in x.chosen.items())
        if x.error is None:   # out of memory in the source: memory only
            lines.append(f"{r.id:52s} {'memory only':21s} {x.memory_bytes / 2**30:8.1f} GiB of "
                         f"{x.capacity_bytes / 2**30:.0f}          {fits}")
            continue
        if r.assumed:   # trainer defaults the row does not state (runs.TRAINER_DEFAULTS)
            chosen += ("; " if chosen else "") + "assumed " + ", ".join(r.assumed)
        lines.append(f"{r.id:52s} {r.measured_unit:21s} {x.predicted:10.4g} {r.measured:10.4g} "
                     f"{100 * x.error:+6.1f}%  {fits:4s}  {chosen}")
    m = report["mape_fraction"]
    lines.append("")
    for src, v in m["by_source"].items():
        lines.append(f"MAPE {src:28s} {100 * v:5.1f}%  ({report['rows_by_source'][src]} rows)")
    if m["overall"] is not None:
        n_rows = sum(report["rows_by_source"].values())
        lines.append(f"MAPE {'overall':28s} {100 * m['overall']:5.1f}%  ({n_rows} rows, "
                     f"{len(report['not_modelled'])} not modelled)")
    f = report["fits"]
    lines.append(f"runs that ran in reality predicted to fit: {f['predicted_to_fit']} of {f['ran']}"
                 + (f" (not: {', '.join(f['not_fitting'])})" if f["not_fitting"] else ""))
    if f["out_of_memory_in_source"]:
        lines.append(f"runs out of memory in reality predicted not to fit: {f['predicted_not_to_fit']} of "
                     f"{f['out_of_memory_in_source']}"
                     + (f" (fit: {', '.join(f['fitting_but_oom'])})" if f["fitting_but_oom"] else ""))
    return "\n".join(lines)
