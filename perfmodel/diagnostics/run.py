"""One ``perfmodel diagnose`` run: train each (width, seed), record why wider models take fewer steps.

For every width and seed the model is trained for exactly ``steps`` optimizer
steps with :func:`perfmodel.steps.train.train` (same tasks and loop as the
step-law measurements) while callbacks record

* weight-space traversal per layer group (:mod:`.traversal`),
* per-example gradients on a fixed probe set of ``probe`` training examples
  (:func:`perfmodel.steps.gradstats.per_example_grads`) at init, halfway and at
  the end, summarized as gradient confusion (:mod:`.confusion`) and gradient
  diversity ``Delta_S`` with its batch bound ``n Delta_S``
  (:func:`perfmodel.steps.gradstats.gradient_diversity`).

Row columns (one row per width and seed): ``direct_distance``, ``path_length``,
``step_size``, ``angle``, ``init_norm``, ``relative_distance`` (direct distance
over ``||W_0||``) for all weights, and the same with a ``_<group>`` suffix per
layer group; ``confusion`` (eta at init, raw inner
products), ``confusion_cos`` (on cosines), ``frac_negative``, ``diversity``
(Delta_S at init), ``batch_bound``, each again with ``_mid`` / ``_final``
suffixes for halfway and the last step; losses and run settings.

``trends`` fits each diagnostic against width (:mod:`.trends`).  An optional
depth sweep measures confusion at init versus the model's ``depth`` knob, at
the middle width.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from ..architectures import get_spec
from ..errors import PerfmodelError
from .trends import mean_interval, width_trends

DEFAULT_LR = {"sgd": 1.0, "adam": 2e-3}
GRADIENT_FIELDS = ("confusion", "confusion_cos", "min_cos", "frac_negative", "cos_q05",
                   "cos_q50", "mean_sq_norm", "diversity", "batch_bound")
TREND_COLUMNS = (
    "direct_distance", "relative_distance", "path_length", "step_size", "angle",
    *(f"{f}_{g}" for f in ("direct_distance", "relative_distance", "step_size", "angle")
      for g in ("embedding", "hidden", "output")),
    "confusion", "confusion_cos", "confusion_final", "confusion_cos_final",
    "diversity", "batch_bound", "diversity_final", "batch_bound_final",
    "train_loss_last", "val_loss_final")


def gradient_stats(model, task, x, y) -> dict[str, float]:
    """Confusion and diversity of the per-example gradients of ``model`` on ``(x, y)``."""
    from ..steps.gradstats import gradient_diversity, per_example_grads
    from .confusion import gradient_confusion
    G = per_example_grads(model, x, y, task.batch_dim, task.loss)
    delta, bound = gradient_diversity(G)
    stats = gradient_confusion(G)
    return {**{k: stats[k] for k in GRADIENT_FIELDS if k in stats},
            "diversity": delta, "batch_bound": bound}


def _default_dataset_size(model: str, steps: int, batch: int, knobs: dict) -> int:
    """One epoch of exactly ``steps`` batches: no example is seen twice."""
    spec = get_spec(model)
    per_example = int(knobs.get("seq_len", spec.knobs["seq_len"].default)) if "seq_len" in spec.knobs else 1
    return steps * batch * per_example + 1


def _check_start(trav, model, optimizer: str, lr: float) -> None:
    """After step 1, confirm the traversal's ``W_0`` is the model ``train`` built (same seed)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            w0 = trav.init[name]
            if optimizer == "sgd" and p.grad is not None:
                bad = not torch.allclose(p + lr * p.grad, w0, rtol=1e-4, atol=1e-5 * (1 + lr))
            else:  # Adam's first step moves every weight by at most lr
                bad = bool(((p - w0).abs() > 1.01 * lr + 1e-6).any())
            if bad:
                raise RuntimeError(f"traversal start does not match the trained model at {name!r}: "
                                   "train() must build its model with torch.manual_seed(seed)")


def diagnose_one(task, width: int, seed: int, steps: int, batch: int, lr: float,
                 optimizer: str, probe_xy, progress: bool = True) -> dict:
    """Train one (width, seed) for ``steps`` steps; the row of diagnostics (see module doc)."""
    from ..steps.train import train
    from .traversal import GROUPS, SUMMARY_FIELDS, Traversal
    torch.manual_seed(seed)  # train() seeds the same way before building its model
    start = task.make_model(width)
    trav = Traversal(start)
    grads = {"": gradient_stats(start, task, *probe_xy)}
    del start
    marks = {max(1, steps // 2): "_mid", steps: "_final"}
    losses = []

    def callback(step, model, loss):
        if step == 1:
            _check_start(trav, model, optimizer, lr)
        trav(step, model, loss)
        losses.append(loss)
        if step in marks:
            grads[marks[step]] = gradient_stats(model, task, *probe_xy)

    spe = task.steps_per_epoch(batch)
    res = train(task, width, batch, lr, optimizer, max_epochs=(steps - 0.5) / spe,
                eval_every=steps, patience=10 ** 9, seed=seed, callback=callback,
                progress=progress, grad_probe=0, position=1)
    k = max(1, len(losses) // 10)
    resolved = get_spec(task.model).resolve(task.module_knobs)  # knob values as integers
    row = {"model": task.model, "width": width, "seed": seed, "params": res["params"],
           "depth": resolved.get("depth"), "steps": res["steps"], "batch": batch,
           "lr": lr, "optimizer": optimizer, "probe": int(probe_xy[0].shape[task.batch_dim]),
           "train_loss_first": sum(losses[:k]) / k, "train_loss_last": sum(losses[-k:]) / k,
           "val_loss_init": res["init_val_loss"], "val_loss_final": res["val_curve"][-1][1],
           "wall_s": res["wall_s"]}
    summary = trav.summary()
    for g in GROUPS:
        sfx = "" if g == "all" else f"_{g}"
        row.update({f"{f}{sfx}": summary[g][f] for f in SUMMARY_FIELDS})
        init = summary[g]["init_norm"]
        row[f"relative_distance{sfx}"] = summary[g]["direct_distance"] / init if init > 0 else math.nan
    for suffix, stats in grads.items():
        row.update({f"{k}{suffix}": v for k, v in stats.items()})
    return row


def confusion_vs_depth(model: str, width: int, depths, seeds: int, probe: int = 16,
                       corpus=None, knobs: dict | None = None, progress: bool = True) -> dict:
    """Gradient confusion at init versus the ``depth`` knob, at one width."""
    from tqdm.auto import tqdm

    from ..steps.data import load_task
    knobs = dict(knobs or {})
    knobs.pop("depth", None)
    rows = []
    bar = tqdm(total=len(depths) * seeds, desc=f"{model} confusion vs depth", disable=not progress)
    for depth in depths:
        for seed in range(seeds):
            size = _default_dataset_size(model, 4, probe, knobs)
            task = load_task(model, size, seed, corpus, depth=depth, **knobs)
            xy = task.sample_train(probe, torch.Generator().manual_seed(seed))
            torch.manual_seed(seed)
            m = task.make_model(width)
            stats = gradient_stats(m, task, *xy)
            rows.append({"model": model, "width": width, "depth": depth, "seed": seed,
                         "params": sum(p.numel() for p in m.parameters()), **stats})
            bar.update()
    bar.close()
    trends = width_trends(rows, ("confusion", "confusion_cos", "frac_negative", "diversity"), x="depth",
                          paired="seed")
    return {"rows": rows, "trends": trends}


def summarize(rows: list[dict]) -> dict:
    """``{"trends": ..., "angle_mean": ...}`` of diagnose rows.

    Trends with width for :data:`TREND_COLUMNS`, pooled and paired by seed (a
    seed fixes the data stream and the probe examples for every width); the
    mean of each angle column with its 95% t-interval (to compare with pi/2).
    """
    cols = [c for c in TREND_COLUMNS if any(c in r for r in rows)]
    angles = {}
    for c in dict.fromkeys(k for r in rows for k in r):
        if c.startswith("angle"):
            m = mean_interval([r[c] for r in rows if r.get(c) is not None])
            if m["n"]:
                angles[c] = m
    return {"trends": width_trends(rows, cols, paired="seed"), "angle_mean": angles}


def write_csv(rows: list[dict], path) -> None:
    """Write ``rows`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def study_knobs(model: str) -> dict:
    """Model knobs a diagnose run uses unless given: the small models of ``steps measure``
    (charlm: RHN depth 2, sequences of 32), so that its findings speak about the runs the step law
    was fitted on, and a 4-width x 3-seed run takes minutes, not hours, on a laptop CPU."""
    from ..steps.sweep import DEFAULTS
    return dict(DEFAULTS.get(model, {}).get("knobs", {}))


def diagnose(model: str, widths, seeds: int = 3, corpus=None, steps: int = 300, batch: int = 32,
             lr: float | None = None, optimizer: str = "sgd", probe: int = 16, knobs: dict | None = None,
             depths=(), dataset_size: int | None = None, progress: bool = True, csv_path=None,
             threads: int | None = 1) -> dict:
    """All (width, seed) rows, their width trends, and the optional depth sweep.

    ``csv_path`` is rewritten (atomically) after every row, so an interrupted
    run keeps what it finished.  ``threads`` sets torch's intra-op threads for
    the run (restored afterwards; ``None`` leaves them): the small recurrent
    kernels gain nothing from more, and on a shared machine extra threads spin
    (``docs/accuracy.md``, "Machine state").
    """
    from ..steps.data import MODELS
    from ..steps.train import STEP_LAW_OPTIMIZERS
    if model not in MODELS:
        raise PerfmodelError(f"unknown model {model!r} for diagnose; allowed: {', '.join(MODELS)}")
    if optimizer not in STEP_LAW_OPTIMIZERS:
        raise PerfmodelError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(STEP_LAW_OPTIMIZERS)}")
    for what, v, lo in (("seeds", seeds, 1), ("steps", steps, 2), ("batch", batch, 1), ("probe", probe, 2)):
        if not isinstance(v, int) or v < lo:
            raise PerfmodelError(f"{what}={v!r} must be an integer >= {lo}")
    widths = list(widths)
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths) or len(set(widths)) < len(widths):
        raise PerfmodelError(f"widths {widths!r} must be distinct positive integers")
    if lr is None:
        lr = DEFAULT_LR[optimizer]
    elif not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise PerfmodelError(f"lr={lr!r} must be a positive number")
    if csv_path is not None:  # before any training: never over the corpus, always writable
        from ..outputs import check_output
        check_output(csv_path, [corpus] if corpus else [], "rows CSV")
    knobs = {**study_knobs(model), **dict(knobs or {})}
    size = dataset_size or _default_dataset_size(model, steps, batch, knobs)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise PerfmodelError(f"threads={threads!r} must be a positive integer")
        torch.set_num_threads(threads)
    try:
        return _diagnose(model, widths, seeds, corpus, steps, batch, lr, optimizer, probe, knobs,
                         depths, size, progress, csv_path)
    finally:
        torch.set_num_threads(saved_threads)


def _diagnose(model, widths, seeds, corpus, steps, batch, lr, optimizer, probe, knobs, depths, size,
              progress, csv_path) -> dict:
    from tqdm.auto import tqdm

    from ..steps.data import load_task
    t0 = time.perf_counter()
    rows = []
    bar = tqdm(total=len(widths) * seeds, desc=f"diagnose {model}", disable=not progress, position=0)
    for seed in range(seeds):
        task = load_task(model, size, seed, corpus, **knobs)
        if task.n_train < probe:
            raise PerfmodelError(f"probe={probe} exceeds the {task.n_train} training examples")
        probe_xy = task.sample_train(probe, torch.Generator().manual_seed(seed))
        for width in widths:
            bar.set_postfix(width=width, seed=seed)
            rows.append(diagnose_one(task, width, seed, steps, batch, lr, optimizer, probe_xy, progress))
            if csv_path:
                write_csv(rows, csv_path)
            bar.update()
    bar.close()
    rows.sort(key=lambda r: (r["width"], r["seed"]))
    out = {"rows": rows, **summarize(rows),
           "settings": {"model": model, "widths": list(widths), "seeds": seeds, "steps": steps,
                        "batch": batch, "lr": lr, "optimizer": optimizer, "probe": probe,
                        "dataset_size": size, "corpus": str(corpus) if corpus else None,
                        "knobs": knobs, "source": task.source, "threads": torch.get_num_threads(),
                        "wall_s_widths": time.perf_counter() - t0}}
    if depths:
        knobs_d = {k: v for k, v in knobs.items() if k != "depth"}
        mid = sorted(widths)[len(widths) // 2]
        out["depth_sweep"] = confusion_vs_depth(model, mid, list(depths), seeds, probe,
                                                corpus, knobs_d, progress)
    out["settings"]["wall_s"] = time.perf_counter() - t0
    if csv_path:
        write_csv(rows, csv_path)
    return out


def jsonable(obj):
    """``obj`` with NaN and infinities replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def format_summary(result: dict) -> str:
    """Plain-text view: per-width medians of the main diagnostics, then the width trends."""
    import statistics
    cols = ("params", "direct_distance", "path_length", "step_size", "angle", "confusion_cos",
            "diversity", "val_loss_final")
    widths = sorted({r["width"] for r in result["rows"]})
    lines = ["median over seeds", "width  " + "  ".join(f"{c:>15}" for c in cols)]
    for w in widths:
        sub = [r for r in result["rows"] if r["width"] == w]
        vals = [statistics.median(r[c] for r in sub) for c in cols]
        lines.append(f"{w:<6} " + "  ".join(f"{v:>15.4g}" for v in vals))
    lines.append("")
    lines.append("trend with width: log-log slope [95% interval], paired by seed [interval], "
                 "(semilog slope per e-fold)")
    for name, t in result["trends"].items():
        ll, sl = t["loglog"], t["semilog"]
        lp = t.get("loglog_paired", {"lo": math.nan, "hi": math.nan})
        lines.append(f"  {name:<28} {ll['slope']:+.3f} [{ll['lo']:+.3f}, {ll['hi']:+.3f}] "
                     f"[{lp['lo']:+.3f}, {lp['hi']:+.3f}]  "
                     f"({sl['slope']:+.4g} [{sl['lo']:+.4g}, {sl['hi']:+.4g}])  {ll['verdict']}")
    for name, t in result.get("depth_sweep", {}).get("trends", {}).items():
        ll = t["loglog"]
        lines.append(f"  vs depth: {name:<18} {ll['slope']:+.3f} [{ll['lo']:+.3f}, {ll['hi']:+.3f}]  "
                     f"{ll['verdict']}")
    return "\n".join(lines)
