"""Layout search: for every width, the (dp, tp, pp, micro-batches, batch) that trains fastest.

The search is NumPy over configurations.  One axis enumerates every
(tp, micro-batch, width) triple -- tp over powers of two, micro-batch over powers of two and the
divisors of the allowed global batches (:func:`.layout.batch_splits`);
dp and pp over powers of two and the divisors of the device count --
and is costed in two op-graph passes (:func:`.device.device_pass`: tp = 1
with fused, calibrated RNN ops; every tp > 1 at once).  Then, per pipeline
depth ``pp`` one vectorized stage partition, and per (dp, micro-batches) one
vectorized evaluation of all remaining configurations:

    B      = dp x micro_batches x micro_batch          (global batch)
    total  = law.steps(M, D, B x seq_len / law.tokens_per_example) x time_per_step
    valid  = dp x tp x pp <= devices, B allowed, tp splits every dimension, fits in memory

Configurations are ordered tp-major, so ``dp x tp x pp <= devices`` keeps a
prefix of the axis (layouts that need too many devices are never costed),
and a pipeline depth larger than the number of layer units is skipped.

With ``SearchSpace(options=OptionSearch())`` the search also picks, per configuration, the ZeRO
stage, recompute mode, sequence parallelism, virtual stages and (MoE) expert-parallel degree
(:mod:`.search_options`); rows then name the choices.  Without it the scenario's options hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..architectures import get_spec
from ..architectures.size import as_int64, countable_batches
from ..errors import PerfmodelError
from ..scenario import Scenario
from ..total import check_dataset_size, law_batch_factor, law_fields
from .device import UnitCosts, device_pass
from .layout import batch_splits, degrees, powers_of_two
from .options import RECOMPUTE_MODES
from .pipeline import partition, slice_stages
from .search_options import OPTION_FIELDS, OptionSearch, best_by_split, ep_choices, modes, searched_scenario
from .step import evaluate

#: doubling the data-parallel degree "stops paying" when it cuts total time by less than this
DP_PAYING_GAIN = 0.10


@dataclass(frozen=True)
class SearchSpace:
    devices: int
    batches: tuple | None = None        # allowed global batches (None: any power of two <= max_batch)
    max_batch: int = 2**16
    max_micro_batch: int = 1024
    max_micro_batches: int = 128
    max_tp: int | None = None
    max_pp: int | None = None
    options: OptionSearch | None = None   # also search ZeRO, recompute, SP, virtual stages, ep

    def check(self) -> None:
        if self.devices < 1:
            raise PerfmodelError(f"--devices {self.devices} is not allowed; it must be >= 1")
        if self.batches is not None and (not self.batches or min(self.batches) < 1):
            raise PerfmodelError(f"batches {self.batches!r} are not allowed; give positive integers")


def _concat(a: UnitCosts, b: UnitCosts) -> UnitCosts:
    if a.names != b.names:
        raise RuntimeError(f"layer units differ between passes: {a.names} vs {b.names}")
    arrays = {f: np.concatenate([getattr(a, f), getattr(b, f)], axis=-1)
              for f in a.__dataclass_fields__ if isinstance(getattr(a, f), np.ndarray)}
    return UnitCosts(a.names, **arrays, steps=a.steps, cyclic=a.cyclic, tied=a.tied)


def cost_configurations(scenario: Scenario, widths, micro_batches, tps):
    """UnitCosts over the tp-major grid (tp, micro_batch, width), flattened; plus the grid."""
    tp_g, mb_g, w_g = (x.ravel() for x in np.meshgrid(tps, micro_batches, widths, indexing="ij"))
    one = tp_g == 1
    units = device_pass(scenario, w_g[one], mb_g[one], 1)
    if (~one).any():
        units = _concat(units, device_pass(scenario, w_g[~one], mb_g[~one], tp_g[~one]))
    return units, tp_g, mb_g, w_g


#: per-width fields of the fastest layout, in the order rows report them
BEST_FIELDS = ("total_time_s", "dp", "tp", "pp", "m", "micro_batch", "batch", "steps", "time_per_step_s",
               "comm_time_s", "bubble_fraction", "per_device_memory_bytes")
INT_FIELDS = ("dp", "tp", "pp", "m", "micro_batch", "batch")


@dataclass(frozen=True)
class PlanRow:
    """One width of a plan: the fastest layout that fits (its fields None when none does: ``why``)."""

    width: int
    params: int
    fits: bool
    total_time_s: float | None = None
    dp: int | None = None
    tp: int | None = None
    pp: int | None = None
    m: int | None = None              # micro-batches per step per data-parallel replica
    micro_batch: int | None = None
    batch: int | None = None          # global batch
    steps: float | None = None
    time_per_step_s: float | None = None
    comm_time_s: float | None = None
    bubble_fraction: float | None = None
    per_device_memory_bytes: float | None = None
    devices_used: int | None = None
    why: str | None = None
    best_dp_only_total_s: float | None = None   # the fastest with tp = pp = 1
    dp_stops_paying_at: int | None = None       # :func:`dp_stops_paying`
    # perfmodel.total_interval: median and 80 % interval of total time, chance of being the fastest width
    total_time_median_s: float | None = None
    total_time_interval_80: list | None = None
    p_fastest: float | None = None
    extrapolation_params_x: float | None = None
    # with SearchSpace(options=...): the options the fastest layout uses (perfmodel.parallel.search_options)
    zero: int | None = None
    recompute: str | None = None
    sequence_parallel: bool | None = None
    virtual_stages: int | None = None
    ep: int | None = None

    def to_dict(self) -> dict:
        out = {"width": self.width, "params": self.params, "fits": self.fits}
        if self.fits:
            out.update({k: getattr(self, k) for k in BEST_FIELDS}, devices_used=self.devices_used,
                       total_time_median_s=self.total_time_median_s,
                       total_time_interval_80=self.total_time_interval_80, p_fastest=self.p_fastest,
                       extrapolation_params_x=self.extrapolation_params_x)
            if self.zero is not None:
                out.update({k: getattr(self, k) for k in OPTION_FIELDS})
        else:
            out["why"] = self.why
        out.update(best_dp_only_total_s=self.best_dp_only_total_s, dp_stops_paying_at=self.dp_stops_paying_at)
        return out


@dataclass
class Plan:
    model: str
    hardware: str
    devices: int
    dataset_size: float
    widths: list
    rows: list                 # one PlanRow per width: the fastest layout (or why none)
    dp_curve: dict             # width -> {dp: best total with tp = pp = 1}
    devices_curve: dict        # width -> {devices used: best total over all layouts}
    law: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    uncertainty: dict = field(default_factory=dict)    # perfmodel.total_interval.attach_plan_intervals

    @property
    def fastest(self) -> PlanRow | None:
        ok = [r for r in self.rows if r.fits]
        return min(ok, key=lambda r: r.total_time_s) if ok else None

    def to_dict(self) -> dict:
        fastest = self.fastest
        return {"model": self.model, "hardware": self.hardware, "devices": self.devices,
                "dataset_size": self.dataset_size, "rows": [r.to_dict() for r in self.rows],
                "fastest": fastest.to_dict() if fastest else None,
                "dp_curve": {str(w): {str(d): t for d, t in c.items()} for w, c in self.dp_curve.items()},
                "devices_curve": {str(w): {str(d): t for d, t in c.items()} for w, c in self.devices_curve.items()},
                "law": self.law, "options": self.options, "uncertainty": self.uncertainty,
                "extrapolation": self.uncertainty.get("extrapolation")}


def dp_stops_paying(curve: dict, gain: float = DP_PAYING_GAIN):
    """The data-parallel degree past which doubling it cuts total time by less than ``gain``."""
    ds = sorted(d for d, t in curve.items() if np.isfinite(t) and d & (d - 1) == 0)
    for d, d2 in zip(ds, ds[1:], strict=False):
        if curve[d2] > (1 - gain) * curve[d]:
            return d
    return None


class _Best:
    """Running minimum of total time per width, with the layout that reached it, and the curves."""

    def __init__(self, n_w: int, searched: bool = False):
        self.n_w = n_w
        keys = BEST_FIELDS + (OPTION_FIELDS if searched else ())
        self.best = {k: np.full(n_w, np.inf if k == "total_time_s" else np.nan) for k in keys}
        self.dp_curve: dict = {}     # dp -> best total per width with tp = pp = 1
        self.dev_curve: dict = {}    # devices used -> best total per width
        self.valid_any = np.zeros(n_w, bool)
        self.fits_any = np.zeros(n_w, bool)

    def update(self, total, valid, fits, tps, n_mb: int, dp: int, pp: int, fields: dict) -> None:
        """``total`` etc. over the tp-major grid (tp, micro-batch, width) of one (dp, pp, m)."""
        n_w = self.n_w
        self.valid_any |= valid.reshape(-1, n_w).any(0)
        self.fits_any |= fits.reshape(-1, n_w).any(0)
        total = np.where(fits, total, np.inf).reshape(-1, n_w)
        per_tp = total.reshape(len(tps), n_mb, n_w).min(1)
        if pp == 1:
            self.dp_curve[dp] = np.minimum(self.dp_curve.get(dp, np.inf), per_tp[0])
        for k, tpv in enumerate(tps):
            used = int(dp * tpv * pp)
            self.dev_curve[used] = np.minimum(self.dev_curve.get(used, np.inf), per_tp[k])
        i = total.argmin(0)
        t_best = total[i, np.arange(n_w)]
        better = t_best < self.best["total_time_s"]
        if better.any():
            flat = i * n_w + np.arange(n_w)
            vals = {"total_time_s": t_best, "dp": dp, "pp": pp,
                    **{k: np.broadcast_to(v, total.size)[flat] for k, v in fields.items()}}
            for k, v in vals.items():
                self.best[k] = np.where(better, v, self.best[k])


def plan(scenario: Scenario, widths, space: SearchSpace, dataset_size, law) -> Plan:
    """Search every valid layout for every width of ``scenario``'s model; see the module docstring."""
    model, knobs, opts = scenario.model, scenario.knobs, scenario.options
    scenario.check()
    space.check()
    dataset = check_dataset_size(dataset_size)
    if "batch" in knobs:
        raise PerfmodelError("plan searches the batch: give allowed global batches as SearchSpace(batches=...) "
                             "(--batches), not the batch knob")
    widths = as_int64(sorted(set(int(w) for w in widths)))
    n_dev, n_w = space.devices, widths.size
    factor = law_batch_factor(law, model, knobs)
    held = held_batch(law, factor) if space.batches is None else None
    batches = space.batches if held is None else (held,)
    max_b = max(batches) if batches else space.max_batch
    allowed = None if batches is None else np.asarray(sorted(batches))
    mbs = np.asarray(countable_batches(get_spec(model), widths, batch_splits(min(space.max_micro_batch, max_b),
                                                                             batches), scenario.dtype,
                                       get_spec(model).resolve(knobs)))   # past int64's counts: left out
    tps = np.asarray(powers_of_two(min(n_dev, space.max_tp or n_dev)))
    search = space.options
    resolved = get_spec(model).resolve(knobs)
    acc = _Best(n_w, search is not None)
    for ep in ep_choices(search, scenario, resolved.get("experts")):
        sc = searched_scenario(search, scenario, ep)
        units, tp_g, mb_g, w_g = cost_configurations(sc, widths, mbs, tps)
        max_pp = min(n_dev, len(units.names), space.max_pp or n_dev)
        for pp in [x for x in degrees(n_dev) if x <= max_pp]:
            stages_all = {r: partition(units, pp, r, sc.options.recompute_every) for r in modes(search, sc, units)}
            for dp in degrees(n_dev // pp):
                n_tp = int(np.searchsorted(tps, n_dev // (dp * pp), side="right"))   # tp-major prefix
                n = n_tp * mbs.size * n_w
                if n == 0 or dp % ep:
                    continue
                st = {r: slice_stages(x, n) for r, x in stages_all.items()}
                tp_s, mb_s = tp_g[:n], mb_g[:n]
                splits = {}                    # m -> (global batch, valid) over the configurations
                for m in batch_splits(space.max_micro_batches, batches):
                    b = dp * m * mb_s
                    if (b > max_b).all():
                        break
                    ok_b = b <= max_b if allowed is None else np.isin(b, allowed)
                    if ok_b.any():
                        splits[m] = (b, ok_b & units.valid[:n])
                if search is not None:
                    by_m = best_by_split({m: v for m, (_, v) in splits.items()}, st, sc, search, dp, tp_s,
                                         units.steps, units.cyclic, resolved.get("layers"), pp)
                for m, (b, valid) in splits.items():
                    if search is None:
                        r = evaluate(st[opts.recompute], sc, dp, tp_s, m, units.steps, units.cyclic)
                        found = {"time_per_step_s": r.time_per_step_s, "comm_time_s": r.comm_time_s,
                                 "bubble_fraction": r.bubble_fraction, "fits": r.fits_in_memory,
                                 "per_device_memory_bytes": r.per_device_memory_bytes}
                    else:
                        found = by_m[m]
                    fits = found.pop("fits")
                    steps = np.asarray(law.steps(units.params_total[:n], dataset, b * factor), dtype=float)
                    acc.update(steps * found["time_per_step_s"], valid, valid & fits, tps[:n_tp], mbs.size, dp, pp,
                               {"tp": tp_s, "m": m, "micro_batch": mb_s, "batch": b, "steps": steps, **found})
    params = units.params_total[:n_w]          # tp = 1, micro-batch 1: one entry per width
    dp_curve = {int(w): {k: float(c[j]) for k, c in sorted(acc.dp_curve.items())} for j, w in enumerate(widths)}
    dev_curve = {int(w): {k: float(c[j]) for k, c in sorted(acc.dev_curve.items())} for j, w in enumerate(widths)}
    rows = _rows(widths, params, acc, dp_curve)
    options = {"dtype": scenario.dtype, "optimizer": scenario.optimizer, "recompute": opts.recompute,
               "schedule": opts.schedule, "persistent_rnn": opts.kernel.persistent_rnn, "streams": opts.kernel.streams,
               "allreduce": opts.algorithm, "overlap": opts.overlap, "zero": opts.zero,
               "sequence_parallel": opts.sequence_parallel, "virtual_stages": opts.virtual_stages, "ep": opts.ep,
               "search_options": search is not None, "max_batch": max_b,
               "batches": list(batches or [])}
    fields = law_fields(law, model, factor, knobs)
    if held is not None:
        fields["batch_note"] = (f"the step law has no batch law (its runs used one batch), so steps are known at "
                                f"its batch only: global batch held at {held}, nearest to its {law.batch_ref:g} "
                                f"examples at equal tokens per step; measure runs at several --batch values, or "
                                f"give --batches, to search the batch")
    out = Plan(model, scenario.hardware.name, n_dev, dataset, [int(w) for w in widths], rows, dp_curve, dev_curve,
               fields, options)
    from ..total_interval import attach_plan_intervals
    return attach_plan_intervals(out, law, factor, scenario.hardware)


def held_batch(law, factor: float) -> int | None:
    """The global batch a plan must keep when ``law`` says nothing about other batches.

    Without a batch law (``b_noise``) the law's steps hold at its own batch only; searching the batch
    would pick the smallest one (shortest steps, same step count).  Returns the power of two nearest
    in log to the law's batch in model examples (``batch_ref / factor``), or None when the law has a
    batch law.
    """
    if getattr(law, "b_noise", None):
        return None
    ref = float(law.batch_ref) / factor
    return int(2 ** max(0, round(np.log2(ref))))


def _rows(widths, params, acc: _Best, dp_curve) -> list[PlanRow]:
    rows = []
    for j, w in enumerate(widths):
        ok = bool(np.isfinite(acc.best["total_time_s"][j]))
        curve = dp_curve[int(w)]
        dp_only = min((t for t in curve.values() if np.isfinite(t)), default=np.inf)
        common = {"width": int(w), "params": int(params[j]), "fits": ok,
                  "best_dp_only_total_s": float(dp_only) if np.isfinite(dp_only) else None,
                  "dp_stops_paying_at": dp_stops_paying(curve)}
        if ok:
            best = {k: int(v[j]) if k in INT_FIELDS + OPTION_FIELDS else float(v[j]) for k, v in acc.best.items()}
            if "recompute" in best:
                best.update(recompute=RECOMPUTE_MODES[best["recompute"]],
                            sequence_parallel=bool(best["sequence_parallel"]))
            rows.append(PlanRow(**common, **best, devices_used=best["dp"] * best["tp"] * best["pp"]))
        else:
            rows.append(PlanRow(**common, why="no valid layout (batch, device count or split constraints)"
                                if not acc.valid_any[j] else "no layout fits in memory"))
    return rows
