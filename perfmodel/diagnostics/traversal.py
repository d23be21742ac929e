"""Weight-space traversal of a training run, per layer group.

For the weights ``W_t`` after ``t`` optimizer steps (``t = 0..T``) and the
gradient ``g_t = grad F(W_t)`` that produced step ``t -> t+1``:

* direct distance  ``||W_T - W_0||``
* path length      ``sum_t ||W_{t+1} - W_t||``
* step size        path length / T (average length of one step)
* angle            mean over ``t >= 1`` of
  ``A_s = arccos(<W_t - W_0, g_t> / (||W_t - W_0|| ||g_t||))``

``g_t`` is the minibatch gradient the optimizer used (read from ``p.grad``
right after the step), so the angle measures how far the direction the run
is pushed in differs from the line back to the start: ``pi/2`` means the run
moves sideways to its own displacement.  Norms are Frobenius norms of the
group's parameters concatenated.

Groups (:func:`layer_groups`): ``embedding`` (``nn.Embedding`` modules),
``output`` (the last module holding parameters: the softmax / classifier
head), ``hidden`` (everything else: recurrent or hidden layers), ``all``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

GROUPS = ("embedding", "hidden", "output", "all")
SUMMARY_FIELDS = ("direct_distance", "path_length", "step_size", "angle", "init_norm")


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names of ``model`` in each of :data:`GROUPS` (``all`` lists every one)."""
    owners = [(name, mod) for name, mod in model.named_modules()
              if any(True for _ in mod.parameters(recurse=False))]
    last = owners[-1][0] if owners else None
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for mod_name, mod in owners:
        group = ("embedding" if isinstance(mod, nn.Embedding)
                 else "output" if mod_name == last else "hidden")
        for p_name, p in mod.named_parameters(recurse=False):
            if p.requires_grad:
                full = f"{mod_name}.{p_name}" if mod_name else p_name
                groups[group].append(full)
                groups["all"].append(full)
    return groups


def angle(displacement: torch.Tensor, gradient: torch.Tensor) -> float:
    """``arccos(<d, g> / (||d|| ||g||))`` in radians; NaN when either vector is zero."""
    d, g = displacement.double().flatten(), gradient.double().flatten()
    nd, ng = d.norm(), g.norm()
    if nd == 0 or ng == 0:
        return float("nan")
    return math.acos(float((d @ g / (nd * ng)).clamp(-1.0, 1.0)))


class Traversal:
    """Train callback ``(step, model, loss)`` that accumulates the traversal statistics.

    Create it on the freshly initialized model (that is ``W_0``), pass it as the
    training callback, then read :meth:`summary`.  Keeps two copies of the
    weights (``W_0`` and ``W_{t-1}``).
    """

    def __init__(self, model: nn.Module, groups: dict[str, list[str]] | None = None):
        self.groups = groups if groups is not None else layer_groups(model)
        names = sorted({n for members in self.groups.values() for n in members})
        params = dict(model.named_parameters())
        self._names = names
        self._init = [params[n].detach().clone() for n in names]
        self._prev = [t.clone() for t in self._init]
        self.init = dict(zip(names, self._init, strict=True))  # W_0 by parameter name (read-only)
        # per-parameter index lists of each group
        pos = {n: i for i, n in enumerate(names)}
        self._members = {g: [pos[n] for n in members] for g, members in self.groups.items()}
        self.steps = 0
        self._path = {g: 0.0 for g in self.groups}
        self._angle_sum = {g: 0.0 for g in self.groups}
        self._angle_n = {g: 0 for g in self.groups}

    @torch.no_grad()
    def __call__(self, step, model: nn.Module, loss=None) -> None:
        params = dict(model.named_parameters())
        cur = [params[n].detach() for n in self._names]
        grads = [params[n].grad for n in self._names]
        # per parameter: ||W_t+1 - W_t||^2, <W_t - W_0, g_t>, ||W_t - W_0||^2, ||g_t||^2
        step_sq, dot, disp_sq, grad_sq = [], [], [], []
        for c, p, w0, g in zip(cur, self._prev, self._init, grads, strict=True):
            step_sq.append((c - p).double().square().sum())
            d = (p - w0).double()
            disp_sq.append(d.square().sum())
            if g is None:
                dot.append(torch.zeros((), dtype=torch.float64))
                grad_sq.append(torch.zeros((), dtype=torch.float64))
            else:
                g = g.double()
                dot.append((d * g).sum())
                grad_sq.append(g.square().sum())
        stats = torch.stack([torch.stack(v) for v in (step_sq, dot, disp_sq, grad_sq)]).tolist()
        for grp, idx in self._members.items():
            s_sq, dt, d_sq, g_sq = (sum(row[i] for i in idx) for row in stats)
            self._path[grp] += math.sqrt(s_sq)
            if d_sq > 0 and g_sq > 0:
                cos = max(-1.0, min(1.0, dt / math.sqrt(d_sq * g_sq)))
                self._angle_sum[grp] += math.acos(cos)
                self._angle_n[grp] += 1
        for p, c in zip(self._prev, cur, strict=True):
            p.copy_(c)
        self.steps += 1

    @torch.no_grad()
    def summary(self) -> dict[str, dict[str, float]]:
        """``{group: {direct_distance, path_length, step_size, angle, init_norm}}``."""
        out = {}
        for grp, idx in self._members.items():
            if not idx:
                out[grp] = {f: float("nan") for f in SUMMARY_FIELDS}
                continue
            direct = math.sqrt(sum(float((self._prev[i] - self._init[i]).double().square().sum())
                                   for i in idx))
            init = math.sqrt(sum(float(self._init[i].double().square().sum()) for i in idx))
            n_ang = self._angle_n[grp]
            out[grp] = {
                "direct_distance": direct,
                "path_length": self._path[grp],
                "step_size": self._path[grp] / self.steps if self.steps else float("nan"),
                "angle": self._angle_sum[grp] / n_ang if n_ang else float("nan"),
                "init_norm": init,
            }
        return out
