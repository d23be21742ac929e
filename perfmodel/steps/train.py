"""Train one (task, width, batch, seed) to minimum validation loss and count the steps.

Validation loss is evaluated every ``eval_every`` optimizer steps (and at step
0).  Training stops after ``patience`` evaluations without a new minimum, or
after ``max_epochs`` passes over the training set (the cap is in epochs, not
steps, so it scales with the dataset).  A run whose minimum is still within
``PLATEAU_MARGIN`` of the task's plateau loss (:meth:`Task.plateau_loss`: a language
model at its unigram level) waits ``PLATEAU_FACTOR x patience`` evaluations instead:
it has learnt nothing from its inputs yet, and may still leave the plateau
(:func:`stop_reason`; the run that showed it: ``docs/accuracy.md``, "Step laws").
A run that hits the cap while its validation loss was still improving within the
patience window is *capped*: its step counts are lower bounds.

Recorded: ``steps_to_min`` (step of the lowest validation loss),
``steps_to_converge`` (first evaluation within ``tol`` = 1 % of that minimum),
``min_val_loss``, ``epochs`` trained, and gradient statistics
(:mod:`perfmodel.steps.gradstats`) on ``grad_probe`` fresh training examples at
step 0 and at evaluations 1, 2, 4, 8, ... (a geometric schedule).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..errors import PerfmodelError
from .data import Task
from .gradstats import grad_stats

#: optimizers the step-law training runs use (name -> torch.optim class)
STEP_LAW_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
#: a minimum above (1 - PLATEAU_MARGIN) x the plateau loss is still on the plateau ...
PLATEAU_MARGIN = 0.02
#: ... and early stopping then waits this many times ``patience`` evaluations
PLATEAU_FACTOR = 4


def stop_reason(since_best: int, best: float, patience: int, plateau: float | None = None) -> str | None:
    """Why training stops after this evaluation, or None to go on (module docstring).

    ``"patience"``: ``since_best >= patience`` evaluations without a new minimum, the minimum
    ``best`` below ``(1 - PLATEAU_MARGIN) * plateau`` (or no plateau loss known); ``"plateau"``:
    the minimum is not below that level and ``since_best >= PLATEAU_FACTOR * patience``.
    """
    if plateau is not None and best >= (1 - PLATEAU_MARGIN) * plateau:
        return "plateau" if since_best >= PLATEAU_FACTOR * patience else None
    return "patience" if since_best >= patience else None


def evaluate(task: Task, model: torch.nn.Module, batch: int = 256) -> float:
    """Mean validation loss over the whole validation set (examples weighted equally)."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in task.val_batches(batch):
            k = x.shape[task.batch_dim]
            total += float(task.loss(model, x, y)) * k
            n += k
    model.train()
    return total / n


def train(task: Task, width: int, batch: int, lr: float, optimizer: str = "adam",
          max_epochs: float = 20, eval_every: int = 50, patience: int = 10, seed: int = 0,
          callback: Callable | None = None, progress: bool = True, tol: float = 0.01,
          grad_probe: int = 128, position: int = 0) -> dict:
    """Train ``task.make_model(width)``; return a dict of step counts and statistics.

    ``callback(step, model, loss)`` runs after every optimizer step (``loss`` is
    the step's training loss as a float).  ``grad_probe=0`` skips gradient
    statistics.
    """
    if optimizer not in STEP_LAW_OPTIMIZERS:
        raise PerfmodelError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(STEP_LAW_OPTIMIZERS)}")
    steps_per_epoch = task.steps_per_epoch(batch)
    if steps_per_epoch < 1:
        raise PerfmodelError(f"batch {batch} is larger than the {task.n_train} training examples "
                             f"of dataset size {task.dataset_size}")
    if eval_every < 1 or patience < 1 or not max_epochs > 0 or not lr > 0:
        raise PerfmodelError(f"need eval_every>=1, patience>=1, max_epochs>0, lr>0; got "
                             f"{eval_every}, {patience}, {max_epochs}, {lr}")
    torch.manual_seed(seed)
    model = task.make_model(width)
    opt = STEP_LAW_OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    probe_gen = torch.Generator().manual_seed(seed + 7_777_777)
    max_steps = int(math.ceil(max_epochs * steps_per_epoch))
    plateau = task.plateau_loss()
    curve, gstats = [], []
    best, best_step, since_best, step, stop = math.inf, 0, 0, 0, "max_epochs"
    t0 = time.perf_counter()

    def checkpoint():
        nonlocal best, best_step, since_best
        loss = evaluate(task, model)
        curve.append((step, loss))
        if loss < best:
            best, best_step, since_best = loss, step, 0
        else:
            since_best += 1
        n_eval = step // eval_every
        if grad_probe and (n_eval & (n_eval - 1)) == 0:  # step 0 and evaluations 1, 2, 4, 8, ...
            x, y = task.sample_train(min(grad_probe, task.n_train), probe_gen)
            gstats.append({"step": step, **grad_stats(model, x, y, task.batch_dim, task.loss)})
        return loss

    bar = tqdm(total=max_steps, desc=f"{task.model} w={width} D={task.dataset_size} B={batch} s={seed}",
               leave=False, disable=not progress, position=position, mininterval=1.0)
    checkpoint()
    while step < max_steps and stop == "max_epochs":
        for x, y in task.train_batches(batch, order_gen):
            loss = task.loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            loss_value = loss.item()
            if callback is not None:
                callback(step, model, loss_value)
            if not math.isfinite(loss_value):
                stop = "diverged"
                break
            if step % eval_every == 0:
                bar.set_postfix(val=f"{checkpoint():.4f}", best=f"{best:.4f}", refresh=False)
                reason = stop_reason(since_best, best, patience, plateau)
                if reason:
                    stop = reason
                    break
            if step >= max_steps:
                break
    if stop == "max_epochs" and step % eval_every:
        checkpoint()
    bar.close()
    converge = next(s for s, v in curve if v <= best * (1 + tol)) if math.isfinite(best) else step
    before_min = [g for g in gstats if g["step"] <= best_step] or gstats
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "steps_to_min": best_step, "steps_to_converge": converge, "min_val_loss": best,
        "init_val_loss": curve[0][1], "epochs": step / steps_per_epoch,
        "epochs_to_min": best_step / steps_per_epoch, "steps": step,
        "steps_per_epoch": steps_per_epoch, "tokens_per_example": task.tokens_per_example,
        "wall_s": time.perf_counter() - t0,
        "capped": stop == "max_epochs", "stop_reason": stop,
        "b_simple": before_min[-1]["b_simple"] if gstats else math.nan,
        "b_diversity": before_min[-1]["b_diversity"] if gstats else math.nan,
        "b_simple_init": gstats[0]["b_simple"] if gstats else math.nan,
        "b_diversity_init": gstats[0]["b_diversity"] if gstats else math.nan,
        "val_curve": curve, "grad_stats": gstats,
    }
