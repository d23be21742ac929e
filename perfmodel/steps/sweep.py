"""The measurement sweep: one training run per (width, dataset size, batch, seed), one CSV row each.

Rows are appended as runs finish (flush + fsync), so an interrupted sweep loses
at most the runs in flight; run it again with the same options and output file
and it skips every row already there (matched on :data:`KEY`).  Runs go to
``jobs`` worker processes (``concurrent.futures.ProcessPoolExecutor``, each
with ``cpu_count // jobs`` torch threads unless ``threads`` is given), or to a
Ray cluster with ``ray_address`` (optional dependency).  The costliest runs
(largest width x D / sqrt(B)) start first.  Stop a sweep with Ctrl-C, which
reaches the workers too.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import functools
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import PerfmodelError

COLUMNS = ("model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min",
           "steps_to_converge", "min_val_loss", "epochs", "wall_s", "capped", "stop_reason",
           "epochs_to_min", "steps", "steps_per_epoch", "tokens_per_example", "init_val_loss",
           "b_simple", "b_diversity", "b_simple_init", "b_diversity_init", "optimizer", "lr",
           "max_epochs", "eval_every", "patience", "corpus", "knobs", "grad_stats", "val_curve")
KEY = ("model", "width", "dataset_size", "batch", "seed", "optimizer", "lr", "max_epochs",
       "eval_every", "patience", "corpus", "knobs")

# Per-model defaults of ``steps measure``: small enough that the default sweep takes minutes.
DEFAULTS = {
    "charlm": {"widths": [32, 64, 128], "data_sizes": [25_000, 50_000], "batches": [32],
               "knobs": {"seq_len": 32, "depth": 2}},
    "wordlm": {"widths": [32, 64, 128], "data_sizes": [25_000, 50_000], "batches": [32],
               "knobs": {"seq_len": 32, "vocab": 2_000}},
    "mlp": {"widths": [16, 32, 64, 128], "data_sizes": [1_000, 2_000, 4_000], "batches": [32],
            "knobs": {"depth": 2}},
}
DEFAULT_LR = {"adam": 2e-3, "sgd": 0.1}


@dataclass
class SweepConfig:
    model: str
    widths: list[int]
    data_sizes: list[int]
    batches: list[int]
    seeds: int = 1
    optimizer: str = "adam"
    lr: float | None = None               # None: DEFAULT_LR[optimizer]
    max_epochs: float = 30
    eval_every: int = 25
    patience: int = 12
    corpus: str | None = None
    knobs: dict[str, Any] = field(default_factory=dict)
    grad_probe: int = 64

    @classmethod
    def with_defaults(cls, model: str, **given) -> SweepConfig:
        """Options left as None take the model's :data:`DEFAULTS`; ``knobs`` overlay the default knobs."""
        if model not in DEFAULTS:
            raise PerfmodelError(f"unknown model {model!r}; allowed: {', '.join(DEFAULTS)}")
        d = DEFAULTS[model]
        given = {k: v for k, v in given.items() if v is not None}
        knobs = {**d["knobs"], **{k: _typed(v) for k, v in given.pop("knobs", {}).items()}}
        if not given.get("corpus") and model != "mlp":  # name the built-in source in every row
            from .data import DATA_KNOBS, GENERATOR_KNOBS
            knobs = {**{k: DATA_KNOBS[model][k] for k in GENERATOR_KNOBS}, **knobs}
        cfg = cls(model, **{k: given.pop(k, d[k]) for k in ("widths", "data_sizes", "batches")},
                  knobs=knobs, **given)
        cfg.lr = cfg.lr or DEFAULT_LR.get(cfg.optimizer)
        if cfg.optimizer not in DEFAULT_LR:
            raise PerfmodelError(f"unknown optimizer {cfg.optimizer!r}; allowed: {', '.join(DEFAULT_LR)}")
        return cfg

    def runs(self) -> list[dict[str, Any]]:
        """One spec per run, costliest first."""
        common = {"model": self.model, "optimizer": self.optimizer, "lr": self.lr,
                  "max_epochs": self.max_epochs, "eval_every": self.eval_every, "patience": self.patience,
                  "corpus": self.corpus or "", "knobs": json.dumps(self.knobs, sort_keys=True)}
        specs = [{**common, "width": w, "dataset_size": D, "batch": B, "seed": s}
                 for w in self.widths for D in self.data_sizes for B in self.batches for s in range(self.seeds)]
        return sorted(specs, key=lambda r: (-r["width"] * r["dataset_size"] / r["batch"] ** 0.5, r["seed"]))


def _typed(v):
    """``"2"`` -> 2, ``"0.1"`` -> 0.1 (knobs from the command line), anything else unchanged."""
    if isinstance(v, str):
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
    return v


# ---------------------------------------------------------------- one run (in a worker)

_WORKER = {"slot": 0, "threads": None}


def _init_worker(threads: int, slots) -> None:
    _WORKER["threads"] = threads
    _WORKER["slot"] = slots.get() if slots is not None else 0


@functools.lru_cache(maxsize=4)
def _task(model, dataset_size, seed, corpus, knobs_json):
    from .data import load_task
    return load_task(model, dataset_size, seed, corpus or None, **json.loads(knobs_json))


def run_one(spec: dict[str, Any], progress: bool = True, grad_probe: int = 64) -> dict[str, Any]:
    """Train one run spec (from :meth:`SweepConfig.runs`) and return its CSV row."""
    import torch

    from .train import train
    if _WORKER["threads"]:
        torch.set_num_threads(_WORKER["threads"])
    task = _task(spec["model"], spec["dataset_size"], spec["seed"], spec["corpus"], spec["knobs"])
    r = train(task, spec["width"], spec["batch"], spec["lr"], spec["optimizer"], spec["max_epochs"],
              spec["eval_every"], spec["patience"], spec["seed"], progress=progress,
              grad_probe=grad_probe, position=_WORKER["slot"] + 1)
    r["val_curve"] = json.dumps([[s, round(v, 6)] for s, v in r["val_curve"]], separators=(",", ":"))
    r["grad_stats"] = json.dumps([{k: _round(v) for k, v in g.items()} for g in r["grad_stats"]],
                                 separators=(",", ":"))
    return {c: {**spec, **r}.get(c, "") for c in COLUMNS}


def _round(v):
    return float(f"{v:.6g}") if isinstance(v, float) else v


# ---------------------------------------------------------------- the CSV

def _norm(v) -> str:
    try:
        return repr(float(v))
    except (TypeError, ValueError):
        return str(v)


def _key(row) -> tuple:
    return tuple(_norm(row[c]) for c in KEY)


SETTINGS = tuple(c for c in KEY if c not in ("width", "dataset_size", "batch", "seed"))


def _read_rows(path: Path) -> list[dict]:
    """Rows already in ``path`` (none if it is missing or empty); checks its columns."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise PerfmodelError(f"{str(path)!r} was written with other columns; write to a new file")
            return [r for r in reader if None not in r.values()]
    except UnicodeDecodeError:
        raise PerfmodelError(f"{str(path)!r} is not a UTF-8 runs CSV; write to a new file") from None


def _check_same_sweep(rows: list[dict], config: SweepConfig, path: Path) -> None:
    """Refuse a runs CSV that holds another model's runs or runs with other settings."""
    mine = config.runs()[0] if config.runs() else None
    for i, r in enumerate(rows):
        if r["model"] != config.model:
            raise PerfmodelError(f"{str(path)!r} holds {r['model']} runs (data row {i + 1}), not {config.model}; "
                                 "write to a new file")
        diff = [c for c in SETTINGS if mine is not None and _norm(r[c]) != _norm(mine[c])]
        if diff:
            c = diff[0]
            raise PerfmodelError(f"{str(path)!r} holds runs with other settings ({c}={r[c]!r}, this sweep "
                                 f"{c}={mine[c]!r}; data row {i + 1}); write to a new file")


def _open_runs(path: Path) -> set[tuple]:
    """Keys of the rows already in ``path``; repairs a last line cut short by an interrupted write.

    Nothing is created here: the header is written with the first row (:func:`_append`),
    so a sweep that fails before its first run leaves no file behind.
    """
    if not path.exists() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    return {_key(r) for r in _read_rows(path)}


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _append(path: Path, row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)
        _sync(f)


CAPPED_WARN_SHARE = 0.25   # warn when more than a quarter of a sweep's runs hit the epoch cap


def capped_warning(config: SweepConfig, path: str | Path) -> str | None:
    """One ``warning:`` line when > 25 % of this sweep's runs in ``path`` hit ``--max-epochs``.

    The suggested cap: for each capped run, the steps to minimum the power law
    (fitted to all the sweep's runs, capped ones as lower bounds) predicts, plus the
    patience window (``patience × eval_every`` steps), in epochs; the largest, × 1.5,
    rounded up to a multiple of 10.  Without enough runs to fit: twice the cap.
    """
    keys = {_key(s) for s in config.runs()}
    rows = [r for r in _read_rows(Path(path)) if _key(r) in keys]
    capped = [r for r in rows if str(r["capped"]).strip().lower() in ("true", "1", "yes")]
    if not rows or len(capped) <= CAPPED_WARN_SHARE * len(rows):
        return None
    suggest = 2 * config.max_epochs
    try:
        import numpy as np

        from .fit import fit_law
        from .runs import read_runs
        law = fit_law(read_runs(path), form="power", n_boot=0, check_coverage=False)
        need = [(float(law.steps(float(r["params"]), float(r["dataset_size"]), float(r["batch"])))
                 + config.patience * config.eval_every) / float(r["steps_per_epoch"]) for r in capped]
        suggest = max(suggest if not need else 0, float(np.max(need)) * 1.5)
    except (PerfmodelError, ValueError, ZeroDivisionError):
        pass
    suggest = int(-(-suggest // 10) * 10)
    return (f"warning: {len(capped)} of {len(rows)} runs ({100 * len(capped) / len(rows):.0f}%) hit the "
            f"--max-epochs {config.max_epochs:g} cap, so their steps are only lower bounds; "
            f"--max-epochs {suggest} would have sufficed by the fitted law")


# ---------------------------------------------------------------- the sweep

def run_sweep(config: SweepConfig, out: str | Path, jobs: int = 1, ray_address: str | None = None,
              progress: bool = True, threads: int | None = None) -> dict[str, int]:
    """Run every missing row of ``config`` into CSV ``out``; returns counts ``done``, ``skipped``.

    Each run uses ``threads`` torch threads (default ``cpu_count // jobs``; one
    thread per run is often fastest for these small models, and far steadier on
    a machine shared with other work).
    """
    out = Path(out)
    if jobs < 1 or (threads is not None and threads < 1):
        raise PerfmodelError(f"--jobs {jobs} and --threads {threads} must be at least 1")
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    from ..outputs import check_output
    from .data import corpus_path
    check_output(out, inputs=[corpus_path(config.corpus)] if config.corpus else [], what="runs CSV")
    for D in sorted(set(config.data_sizes)):  # bad options fail here, before any worker starts
        task = _task(config.model, D, 0, config.corpus or "", json.dumps(config.knobs, sort_keys=True))
        for B in config.batches:
            if task.steps_per_epoch(B) < 1:
                raise PerfmodelError(f"batch {B} exceeds the {task.n_train} training examples at dataset size "
                                     f"{D}; use a smaller --batch or larger --data-sizes")
    if ray_address:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise PerfmodelError("--ray-address needs Ray, which is not installed "
                                 "(pip install 'perfmodel[ray]')") from None
    _check_same_sweep(_read_rows(out), config, out)
    have = _open_runs(out)
    todo = [s for s in config.runs() if _key(s) not in have]
    counts = {"done": 0, "skipped": len(config.runs()) - len(todo)}
    bar = tqdm(total=len(todo), desc=f"steps sweep {config.model}", unit="run", disable=not progress, position=0)

    def record(row):
        _append(out, row)
        counts["done"] += 1
        bar.update(1)
        bar.set_postfix(last=f"w={row['width']} D={row['dataset_size']} steps={row['steps_to_min']}")

    try:
        if ray_address:
            _run_ray(todo, ray_address, record, config.grad_probe)
        elif jobs == 1:
            _run_here(todo, threads, record, progress, config.grad_probe)
        else:
            _run_pool(todo, jobs, threads, record, progress, config.grad_probe)
    finally:
        bar.close()
    return counts


def _run_here(todo, threads, record, progress, grad_probe):
    """In this process, restoring its torch thread count afterwards."""
    import torch
    before = torch.get_num_threads()
    _init_worker(threads, None)
    try:
        for spec in todo:
            record(run_one(spec, progress, grad_probe))
    finally:
        _WORKER["threads"] = None
        torch.set_num_threads(before)


def _run_pool(todo, jobs, threads, record, progress, grad_probe):
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for i in range(jobs):
        slots.put(i)
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                initargs=(threads, slots)) as pool:
        futures = [pool.submit(run_one, spec, progress, grad_probe) for spec in todo]
        try:
            for fut in cf.as_completed(futures):
                record(fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run_ray(todo, address, record, grad_probe):
    try:
        import ray
    except ImportError:
        raise PerfmodelError("--ray-address needs Ray, which is not installed (pip install 'ray[default]')") from None
    # "local" starts a throwaway one-machine cluster: no dashboard to serve
    ray.init(address=address, ignore_reinit_error=True, **({"include_dashboard": False} if address == "local" else {}))
    remote = ray.remote(num_cpus=1)(_run_one_single_thread)
    pending = [remote.remote(spec, grad_probe) for spec in todo]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        record(ray.get(done[0]))


def _run_one_single_thread(spec, grad_probe):
    _WORKER["threads"] = 1
    return run_one(spec, progress=False, grad_probe=grad_probe)
