"""Validation on random configurations: ``perfmodel validate --model NAME --sample N [--seed S]``.

A draw picks, with ``random.Random(seed)`` and in a fixed order,

* ``width`` log-uniform in ``WIDTH`` = [32, 2048] (rounded to a multiple of ``WIDTH_MULTIPLE[model]``:
  the transformer's head size, 64),
* ``batch`` log-uniform in ``BATCH`` = [4, 128],
* ``seq_len`` log-uniform in ``SEQ_LEN`` = [16, 150] for the models that have one,
* the model's other knobs in the ranges of ``KNOBS[model]`` (a ``(lo, hi)`` tuple: a log-uniform
  integer; a list: one of its values, uniformly),
* except the knobs given as fixed (``--set``, ``--batch``, ``--seq-len``: ``Ranges.fixed``), which every
  draw takes as given (``--set block=llama --set attention=flash`` samples Llama blocks only),

where an integer log-uniform in [lo, hi] is ``round(exp(U(ln(lo - 1/2), ln(hi + 1/2))))``: the
integer ``v`` has probability ``ln((v + 1/2) / (v - 1/2)) / ln((hi + 1/2) / (lo - 1/2))``.  A draw is kept when
its predicted step on the profile takes at most ``max_step_s`` seconds and fits in the device's
memory; otherwise (or when the model rejects the knobs, e.g. a CTC target longer than its frames)
it is redrawn, at most ``MAX_DRAWS_PER_CONFIG`` draws per configuration asked for.  The kept
configurations are then validated like widths (:func:`perfmodel.validate.validate_configs`), each row
carrying its knobs.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import PerfmodelError
from .hardware import HardwareProfile

WIDTH = (32, 2048)
BATCH = (4, 128)
SEQ_LEN = (16, 150)
WIDTH_MULTIPLE = {"transformer": 64}
#: the other knobs drawn per model: (low, high) integers drawn log-uniformly, or a list of choices
KNOBS = {
    "charlm": {"depth": (1, 10)},
    "wordlm": {"layers": (1, 3), "vocab": (1000, 10000)},
    "speech": {"rnn_layers": (1, 4), "freq_bins": (41, 161), "target_len": (2, 20)},
    "mlp": {"depth": (1, 6), "input_dim": (64, 2048), "classes": (10, 1000)},
    "transformer": {"layers": (1, 4), "vocab": (1000, 50257)},
    "resnet": {"variant": [18, 34], "image_size": (32, 128), "classes": (10, 1000)},
}
MAX_STEP_S = 2.0
MAX_DRAWS_PER_CONFIG = 50
WORST_ROWS = 5


@dataclass(frozen=True)
class Ranges:
    """What a draw covers; the defaults are the module's ranges."""

    width: tuple = WIDTH
    batch: tuple = BATCH
    seq_len: tuple = SEQ_LEN
    knobs: dict | None = None      # None: KNOBS[model]
    fixed: dict | None = None      # knobs every draw takes as given (``--set``, ``--batch``, ``--seq-len``)

    def for_model(self, model: str) -> dict:
        """``{knob: (lo, hi) or choices}`` in drawing order, ``width`` first; fixed knobs are not drawn."""
        from .architectures import get_spec
        spec = get_spec(model)
        out = {"width": self.width, "batch": self.batch}
        if "seq_len" in spec.knobs:
            out["seq_len"] = self.seq_len
        out.update(KNOBS.get(model, {}) if self.knobs is None else self.knobs)
        return {k: r for k, r in out.items() if k not in (self.fixed or {})}


def log_uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi], log-uniform (module docstring)."""
    if lo > hi or lo < 1:
        raise PerfmodelError(f"range [{lo}, {hi}] is not allowed; it needs 1 <= low <= high")
    v = round(math.exp(rng.uniform(math.log(lo - 0.5), math.log(hi + 0.5))))
    return min(max(v, lo), hi)


def draw_one(rng: random.Random, model: str, ranges: dict) -> tuple[int, dict]:
    """``(width, knobs)``: one configuration drawn from ``ranges`` (:meth:`Ranges.for_model`)."""
    values = {}
    for name, r in ranges.items():
        values[name] = rng.choice(r) if isinstance(r, list) else log_uniform_int(rng, *r)
    m = WIDTH_MULTIPLE.get(model, 1)
    width = values.pop("width")
    return max(m, round(width / m) * m), values


def draw_configs(model: str, n: int, hw: HardwareProfile, seed: int = 0, max_step_s: float = MAX_STEP_S,
                 ranges: Ranges = Ranges(), dtype: str = "fp32", optimizer: str = "sgd") -> tuple[list, int]:
    """``n`` configurations whose predicted step on ``hw`` takes at most ``max_step_s``; ``(configs, draws)``."""
    from .predict import predict
    if n < 1:
        raise PerfmodelError(f"--sample {n!r} is not allowed; it must be >= 1")
    if not max_step_s > 0:
        raise PerfmodelError(f"--max-step-s {max_step_s!r} is not allowed; it must be > 0")
    if ranges.fixed:   # a bad fixed knob is one error now, not 50 x n failed draws
        from .architectures import get_spec
        get_spec(model).resolve(ranges.fixed)
    rng, space = random.Random(seed), ranges.for_model(model)
    out, draws = [], 0
    while len(out) < n and draws < MAX_DRAWS_PER_CONFIG * n:
        draws += 1
        width, knobs = draw_one(rng, model, space)
        knobs.update(ranges.fixed or {})
        try:
            p = predict(model, width, hw, dtype, optimizer, **knobs)
        except PerfmodelError:
            continue
        if p.time_per_step_s <= max_step_s and p.fits_in_memory:
            out.append((width, knobs))
    if len(out) < n:
        raise PerfmodelError(f"--sample {n} is not allowed here: only {len(out)} of {draws} draws of {model!r} are "
                             f"predicted at most {max_step_s:g} s per step on {hw.name}; raise --max-step-s")
    return out, draws


def validate_sample(model: str, n: int, hw: HardwareProfile, seed: int = 0, max_step_s: float = MAX_STEP_S,
                    ranges: Ranges = Ranges(), dtype: str = "fp32", optimizer: str = "sgd", **run):
    """Draw ``n`` configurations (:func:`draw_configs`) and validate them; ``(Validation, sample info)``.

    ``run`` goes to :func:`perfmodel.validate.validate_configs` (device, warmup, repeats, ...)."""
    from .validate import validate_configs
    configs, draws = draw_configs(model, n, hw, seed, max_step_s, ranges, dtype, optimizer)
    v = validate_configs(model, configs, hw, dtype=dtype, optimizer=optimizer, **run)
    info = {"n": n, "seed": seed, "max_step_s": max_step_s, "draws": draws,
            "ranges": {k: list(r) for k, r in ranges.for_model(model).items()}, "fixed": dict(ranges.fixed or {})}
    return v, info


def worst_rows(v, k: int = WORST_ROWS) -> list[int]:
    """Indices of the ``k`` rows that ran with the largest ``|error|``, largest first."""
    ran = [i for i, r in enumerate(v.rows) if r.error is not None]
    return sorted(ran, key=lambda i: -abs(v.rows[i].error))[:k]


#: a class needs this many rows on each side of its split
CLASS_MIN_ROWS = 4
#: |mean error| / standard error at which a class counts as systematically off
CLASS_T = 2.0
#: standard error floor of the t statistic (identical errors give a large, finite t; all-zero ones 0)
T_FLOOR_SE = 1e-9


def error_classes(v) -> list[dict]:
    """The rows split in two at the median of each drawn knob (width, batch, sequence, ...): per half,
    its rows, MAPE, mean signed error and ``t = mean / (sd / sqrt(n))`` (the one-sample t statistic
    of the signed errors; ``|t| >= CLASS_T`` marks a half that is off as a class rather than by the
    machine's scatter), and the mean of the speed-adjusted errors where every row has one.  Halves
    with fewer than ``CLASS_MIN_ROWS`` rows are left out; largest ``|t|`` first."""
    ran = [r for r in v.rows if r.error is not None]
    out = []
    for knob in ["width", *sorted({k for r in ran for k in r.knobs})]:
        vals = [(r.width if knob == "width" else r.knobs.get(knob)) for r in ran]
        if any(not isinstance(x, int | float) for x in vals) or len(set(vals)) < 2:
            continue
        mid = sorted(vals)[(len(vals) - 1) // 2]
        for side, keep in (("<=", lambda x, m=mid: x <= m), (">", lambda x, m=mid: x > m)):
            rows = [r for r, x in zip(ran, vals, strict=True) if keep(x)]
            if len(rows) < CLASS_MIN_ROWS or len(rows) == len(ran):
                continue
            errs = [r.error for r in rows]
            mean = sum(errs) / len(errs)
            sd = math.sqrt(sum((e - mean) ** 2 for e in errs) / (len(errs) - 1))
            adj = [r.error_speed_adjusted for r in rows]
            out.append({"knob": knob, "side": side, "split": mid, "n": len(rows),
                        "mape": sum(abs(e) for e in errs) / len(errs), "mean_error": mean,
                        "t": mean / max(sd / math.sqrt(len(errs)), T_FLOOR_SE),
                        "mean_error_speed_adjusted": None if None in adj else sum(adj) / len(adj)})
    return sorted(out, key=lambda c: -abs(c["t"]))


def class_line(classes: list[dict]) -> str:
    """One line naming the worst class of configurations (:func:`error_classes`), or saying none is off."""
    if not classes:
        return "error by class: too few configurations to split"
    c = classes[0]
    what = (f"{c['knob']} {c['side']} {c['split']:g} ({c['n']} configurations): mean error "
            f"{100 * c['mean_error']:+.1f}%, MAPE {100 * c['mape']:.1f}%, t = {c['t']:+.1f}")
    if c["mean_error_speed_adjusted"] is not None:
        what += f"; speed-adjusted mean {100 * c['mean_error_speed_adjusted']:+.1f}%"
    if abs(c["t"]) >= CLASS_T:
        return f"worst class: {what}"
    return f"no class of configurations off systematically (|t| < {CLASS_T:g}); the largest: {what}"
