"""Teacher-student convergence rate versus width, the NTK at init, and depth as momentum.

Setup (Du et al. 2019, arXiv:1810.02054, Sec. 3; shapes from the issue):

* teacher: 2-layer net ``y = v* . sigma(W* x)``, input 50, hidden 100, output 1;
  inputs ``x ~ N(0, I)``, weights Gaussian with variance ``1/fan_in`` so targets
  are O(1).  The teacher uses the student's activation, so every student can
  reach zero loss and its convergence rate is not masked by a loss floor.
* student: ``u(x) = [a *] v . sigma(W_{L-1} ... sigma(W_1 x))`` with ``L`` = 2 or
  3 weight layers of ``width`` units, no biases, Gaussian ``1/fan_in`` init
  (PyTorch's default scale), optional trainable scalar ``a`` (init 1) on top.
* loss ``L = (1/p) sum_i |u_i - y_i|^p`` (``p = 2``: squared loss, summed as in
  Du et al. so that ``du/dt = -eta H (u - y)``), plain full-batch gradient
  descent with one learning rate for all widths.

Gram (NTK) matrix ``H_ij = sum_r du_i/dw_r du_j/dw_r`` (Du et al. eq. 4).  With a
fixed kernel, GD on squared loss shrinks the slowest residual mode by
``(1 - eta lambda_min)`` per step, so late in training
``1 - L_{t+1}/L_t -> 1 - (1 - eta lambda_min)^2`` (``rate_pred``).  Under the
``1/fan_in`` init the output layer contributes ``sum_r sigma(h_r)^2 ~ width``
to ``H``, so ``lambda_min`` -- and the rate at a fixed learning rate -- grows
linearly with width, for 3-layer students too (the middle layer adds another
O(width) term, not O(width^2)).

Depth as momentum (Arora, Cohen & Hazan 2018, arXiv:1802.06509, Sec. 7-8): a
scalar multiplication layer ``a`` on top turns GD on the end-to-end function
into an adaptive, momentum-like update; they observe the speed-up on l_4, not
l_2, regression.  :func:`momentum_study` compares steps to a loss target for
plain GD, GD with the scalar layer, and heavy-ball momentum.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import PerfmodelError

ACTIVATIONS = {"linear": lambda h: h, "sigmoid": torch.sigmoid, "relu": torch.relu}
# student name -> (activation, weight layers)
STUDENTS = {"linear": ("linear", 2), "sigmoid": ("sigmoid", 2), "relu": ("relu", 2),
            "relu3": ("relu", 3)}
INPUT_DIM, TEACHER_HIDDEN = 50, 100


class Student(nn.Module):
    """``u(x) = [a *] v . act(W_{L-1} ... act(W_1 x))``: ``layers`` weight layers, no biases."""

    def __init__(self, input_dim: int, width: int, activation: str = "relu", layers: int = 2,
                 scalar: bool = False, generator: torch.Generator | None = None,
                 dtype=torch.float64):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise PerfmodelError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if layers < 2:
            raise PerfmodelError(f"layers={layers!r}: a student needs at least 2 weight layers")
        self.activation = activation
        dims = [input_dim] + [width] * (layers - 1)
        self.hidden = nn.ParameterList(
            nn.Parameter(torch.randn(b, a, generator=generator, dtype=dtype) / math.sqrt(a))
            for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.output = nn.Parameter(torch.randn(width, generator=generator, dtype=dtype) / math.sqrt(width))
        self.scalar = nn.Parameter(torch.ones((), dtype=dtype)) if scalar else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for w in self.hidden:
            x = act(x @ w.T)
        u = x @ self.output
        return u * self.scalar if self.scalar is not None else u


def teacher_data(n: int, activation: str, seed: int, input_dim: int = INPUT_DIM,
                 hidden: int = TEACHER_HIDDEN) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X[n, input_dim], y[n])`` from a Gaussian 2-layer teacher with ``activation``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    teacher = Student(input_dim, hidden, activation, 2, generator=g)
    X = torch.randn(n, input_dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        return X, teacher(X)


def ntk_gram(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """``H[n, n]``, ``H_ij = sum_r du_i/dw_r du_j/dw_r`` over all trainable parameters.

    The Jacobian rows ``du_i/dw`` are the per-example gradients of ``u(x_i)``
    (:func:`perfmodel.steps.gradstats.per_example_grads`, the same code as the
    gradient statistics).
    """
    from ..steps.gradstats import per_example_grads
    J = per_example_grads(model, X, X[:, 0], 0, loss=lambda m, x, y: m(x).sum())
    return J @ J.T


def loss_lp(u: torch.Tensor, y: torch.Tensor, p: float = 2) -> torch.Tensor:
    """``(1/p) sum_i |u_i - y_i|^p``."""
    return (u - y).abs().pow(p).sum() / p


def gradient_descent(model: nn.Module, X, y, lr: float, steps: int, p: float = 2,
                     momentum: float = 0.0, floor: float = 1e-26) -> np.ndarray:
    """Full-batch (heavy-ball when ``momentum > 0``) GD; the losses ``L_0..L_t``.

    Stops early once the loss drops below ``floor`` times ``L_0`` or stops being finite.
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_lp(model(X), y, p)
        value = loss.item()
        losses.append(value)
        if not math.isfinite(value) or value <= floor * losses[0] or len(losses) > steps:
            break
        loss.backward()
        opt.step()
    return np.asarray(losses)


def convergence_rate(losses, hi: float = 1e-2, lo: float = 1e-12, tail: float = 0.5) -> dict:
    """Steady-region rate ``1 - L_{t+1}/L_t`` of a loss curve.

    The usable window runs from the first step with ``L_t/L_0 <= hi`` (or from
    the middle of the run when the loss never gets there) to the last step with
    ``L_t/L_0 >= lo`` (below that, rounding takes over).  The steady region is
    the last ``tail`` of that window, where the slowest modes dominate; the rate
    is ``1 - exp(s)`` for the least-squares slope ``s`` of ``ln L_t`` over it.
    ``drift`` = rate over the region's first half / rate over its second half - 1
    (near 0 when the decay is steady; positive while the rate is still falling).
    """
    L = np.asarray(losses, float)
    n = len(L)
    nan = float("nan")
    if n < 8 or not np.isfinite(L).all() or L[0] <= 0:
        return {"rate": nan, "drift": nan, "start": 0, "stop": n, "region": "diverged"}
    rel = L / L[0]
    below = np.nonzero(rel <= hi)[0]
    reached = bool(below.size) and below[0] < n - 8
    first = int(below[0]) if reached else n // 2
    above = np.nonzero(rel >= lo)[0]
    stop = min(n, max(int(above[-1]) + 1, first + 8))
    start = max(first, stop - max(8, int(tail * (stop - first))))
    t = np.arange(start, stop)
    logs = np.log(L[t])

    def rate(tt, yy):
        return 1 - math.exp(np.polyfit(tt, yy, 1)[0])

    h = len(t) // 2
    r1, r2 = rate(t[:h], logs[:h]), rate(t[h:], logs[h:])
    return {"rate": rate(t, logs), "drift": r1 / r2 - 1 if r2 else nan, "start": start, "stop": stop,
            "region": "steady" if reached else "late-half"}


def _spec(name: str) -> tuple[str, int]:
    """``(activation, weight layers)`` of student ``name``."""
    try:
        return STUDENTS[name]
    except KeyError:
        raise PerfmodelError(f"unknown student {name!r}; allowed: {', '.join(STUDENTS)}") from None


def _student(name: str, width: int, seed: int, scalar: bool = False) -> Student:
    act, layers = _spec(name)
    g = torch.Generator().manual_seed(seed)
    return Student(INPUT_DIM, width, act, layers, scalar=scalar, generator=g)


def _eig_range(H: torch.Tensor) -> tuple[float, float]:
    ev = torch.linalg.eigvalsh(H)
    return float(ev[0]), float(ev[-1])


def convergence_study(students=("linear", "sigmoid", "relu3"), widths=(64, 128, 256, 512, 1024),
                      seeds: int = 3, n: int = 40, steps: int | dict = 20_000, lr: float | None = None,
                      progress: bool = True) -> dict:
    """Rate and ``lambda_min(H_0)`` per (student, width, seed) plus log-log trends with width.

    ``lr`` defaults, per student, to ``1 / lambda_max(H_0)`` of the widest
    student at seed 0 (GD on squared loss is stable below ``2 / lambda_max``),
    and is then held fixed across widths and seeds.  ``steps`` is a number or
    ``{student: steps}`` (ill-conditioned students such as sigmoid need more).
    """
    from tqdm import tqdm
    rows = []
    jobs = [(s, w, k) for s in students for w in widths for k in range(seeds)]
    bar = tqdm(total=len(jobs), desc="teacher-student", disable=not progress)
    for name in students:
        act = _spec(name)[0]
        if lr is None:
            X, _ = teacher_data(n, act, 0)
            eta = 1.0 / _eig_range(ntk_gram(_student(name, max(widths), 0), X))[1]
        else:
            eta = lr
        for width in widths:
            for seed in range(seeds):
                X, y = teacher_data(n, act, seed)
                model = _student(name, width, seed)
                lam_min, lam_max = _eig_range(ntk_gram(model, X))
                budget = steps[name] if isinstance(steps, dict) else steps
                losses = gradient_descent(model, X, y, eta, budget)
                fit = convergence_rate(losses)
                rows.append({
                    "student": name, "width": width, "seed": seed, "n": n,
                    "params": sum(p.numel() for p in model.parameters()), "lr": eta,
                    "ntk_lambda_min": lam_min, "ntk_lambda_max": lam_max,
                    "rate": fit["rate"], "rate_pred": 1 - (1 - eta * lam_min) ** 2,
                    "drift": fit["drift"], "region": fit["region"], "steps_run": len(losses) - 1,
                    "final_loss": float(losses[-1]), "loss0": float(losses[0]),
                })
                bar.update()
    bar.close()
    return {"rows": rows, "trends": student_trends(rows),
            "settings": {"input_dim": INPUT_DIM, "teacher_hidden": TEACHER_HIDDEN, "n": n,
                         "steps": steps, "seeds": seeds, "widths": list(widths),
                         "lr": "1/lambda_max(H_0) of the widest student, seed 0",
                         "loss": "0.5 * sum (u - y)^2", "optimizer": "full-batch GD"}}


def student_trends(rows: list[dict]) -> dict:
    """Log-log trends of rate, predicted rate and ``lambda_min`` with width, per student.

    Keys ``"<student>/<column>"`` fit all widths; ``"<student>/<column>@width>=<w>"``
    fit the upper half of the widths only (from the middle width up), where the
    width-independent part of ``H`` (e.g. the ``sum v_l^2 X X^T`` term of a linear
    student, O(1) against O(width)) no longer bends the log-log line.  Each has
    a pooled fit and a fit paired by seed (a seed fixes the teacher and the data
    for every width).
    """
    from .trends import width_trends
    cols = ("rate", "rate_pred", "ntk_lambda_min")
    trends = {}
    for name in dict.fromkeys(r["student"] for r in rows):
        sub = [r for r in rows if r["student"] == name]
        widths = sorted({r["width"] for r in sub})
        w_mid = widths[len(widths) // 2]
        upper = [r for r in sub if r["width"] >= w_mid]
        for key, fit in width_trends(sub, cols, paired="seed").items():
            trends[f"{name}/{key}"] = fit
        if len({r["width"] for r in upper}) >= 2:
            for key, fit in width_trends(upper, cols, paired="seed").items():
                trends[f"{name}/{key}@width>={w_mid}"] = fit
    return trends


def _steps_to(losses: np.ndarray, target: float) -> float:
    hit = np.nonzero(losses <= target * losses[0])[0]
    return float(hit[0]) if hit.size else float("nan")


def momentum_study(student: str = "relu", width: int = 100, seeds: int = 5, n: int = 40,
                   ps=(2, 4), steps: int = 5_000, momentum: float = 0.9, target: float = 1e-3,
                   target_scale: float = 1.0, progress: bool = True) -> dict:
    """Depth as momentum: steps to ``L <= target * L_0`` for three optimizers per loss ``l_p``.

    Variants: ``gd`` (plain GD), ``gd+scalar`` (GD on the same net with a
    trainable scalar layer on top, init 1, so the start is identical),
    ``momentum`` (heavy ball, ``momentum``).  One learning rate per (p, seed):
    ``1 / (lambda_max(H_0) * max(1, (p-1) max_i |r_i|^(p-2)))``, the
    Gauss-Newton curvature bound of the l_p loss at init.  ``target_scale``
    multiplies the teacher's outputs: at 1 the student's output layer (norm ~1,
    balanced with ``a = 1``) needs no growth; larger targets make the end-to-end
    weights grow, the regime in which Arora et al.'s adaptive factor
    ``||w||^(2 - 2/N)`` speeds GD up.  ``summary`` gives the geometric-mean
    speed-up over ``gd`` with a 95% t-interval across seeds.
    """
    from scipy import stats
    from tqdm import tqdm
    act = _spec(student)[0]
    rows = []
    bar = tqdm(total=len(ps) * seeds * 3, desc="depth-as-momentum", disable=not progress)
    for p in ps:
        for seed in range(seeds):
            X, y = teacher_data(n, act, seed)
            y = y * target_scale
            base = _student(student, width, seed)
            lam_max = _eig_range(ntk_gram(base, X))[1]
            with torch.no_grad():
                r_max = float((base(X) - y).abs().max())
            eta = 1.0 / (lam_max * max(1.0, (p - 1) * r_max ** (p - 2)))
            for variant, scalar, mom in (("gd", False, 0.0), ("gd+scalar", True, 0.0),
                                         ("momentum", False, momentum)):
                losses = gradient_descent(_student(student, width, seed, scalar=scalar), X, y,
                                          eta, steps, p=p, momentum=mom)
                rows.append({"p": p, "seed": seed, "variant": variant, "width": width, "lr": eta,
                             "steps_to_target": _steps_to(losses, target),
                             "final_loss_ratio": float(losses[-1] / losses[0]),
                             "steps_run": len(losses) - 1})
                bar.update()
    bar.close()
    summary = {}
    for p in ps:
        gd = {r["seed"]: r for r in rows if r["p"] == p and r["variant"] == "gd"}
        for variant in ("gd+scalar", "momentum"):
            logs = []
            for r in rows:
                if r["p"] == p and r["variant"] == variant:
                    a, b = gd[r["seed"]]["steps_to_target"], r["steps_to_target"]
                    if not (math.isnan(b)):
                        a = steps if math.isnan(a) else a  # gd never got there: lower bound
                        logs.append(math.log(a / b))
            entry = {"speedup": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": len(logs)}
            if logs:
                m = float(np.mean(logs))
                entry["speedup"] = math.exp(m)
                if len(logs) > 1:
                    half = stats.t.ppf(0.975, len(logs) - 1) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
                    entry.update(lo=math.exp(m - half), hi=math.exp(m + half))
            summary[f"l{p}/{variant}"] = entry
    return {"rows": rows, "summary": summary,
            "settings": {"student": student, "width": width, "n": n, "steps": steps,
                         "momentum": momentum, "target": target, "seeds": seeds,
                         "target_scale": target_scale, "ps": list(ps)}}


def main(argv=None) -> None:
    """``python -m perfmodel.diagnostics.ntk -o OUT.json``: the teacher-student studies."""
    import argparse
    import json

    from .run import jsonable
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("-o", "--output", required=True, help="JSON file to write")
    ap.add_argument("--students", default="linear,sigmoid,relu3")
    ap.add_argument("--widths", default="32,64,128,256,512,1024")
    ap.add_argument("--widths-relu3", default="32,64,128,256,512")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=40, help="training examples")
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--steps-sigmoid", type=int, default=60_000)
    ap.add_argument("--momentum-seeds", type=int, default=5)
    ap.add_argument("--momentum-steps", type=int, default=5_000)
    ap.add_argument("--target-scales", default="1,10")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    out = {"convergence": {}, "momentum": {}}
    for name in args.students.split(","):
        widths = ints(args.widths_relu3 if name == "relu3" else args.widths)
        steps = args.steps_sigmoid if name == "sigmoid" else args.steps
        res = convergence_study((name,), widths, args.seeds, args.n, steps)
        for key in ("rows", "trends"):
            out["convergence"].setdefault(key, {} if key == "trends" else [])
        out["convergence"]["rows"] += res["rows"]
        out["convergence"]["trends"].update(student_trends(res["rows"]))
        out["convergence"].setdefault("settings", {})[name] = res["settings"]
    for scale in (float(v) for v in args.target_scales.split(",")):
        out["momentum"][f"target_scale={scale:g}"] = momentum_study(
            seeds=args.momentum_seeds, n=args.n, steps=args.momentum_steps, target_scale=scale)
    with open(args.output, "w") as f:
        json.dump(jsonable(out), f, indent=1)


if __name__ == "__main__":  # pragma: no cover
    main()
