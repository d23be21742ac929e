"""Per-example gradients, gradient diversity and the gradient noise scale.

Notation: n examples with per-example gradients g_i (rows of ``G``), the
true gradient G = E[g_i] and per-example covariance Σ.  The mean gradient over a
batch of B examples, G_B, satisfies E‖G_B‖² = ‖G‖² + tr(Σ)/B.

* Gradient diversity (Yin et al. 2018, "Gradient Diversity: a Key Ingredient
  for Scalable Distributed Learning", Def. 1 and Thm. 3)::

      Δ_S = Σ_i ‖g_i‖² / ‖Σ_i g_i‖²,     batch bound B_S = n · Δ_S

  Identical gradients give Δ_S = 1/n (B_S = 1); mutually orthogonal ones give
  Δ_S = 1 (B_S = n).  Since B_S = mean‖g_i‖² / ‖mean g_i‖² ≈ (‖G‖² + tr Σ) /
  (‖G‖² + tr Σ / n), B_S ≈ 1 + B_simple once n ≫ B_simple, and B_S < n always
  for n ≫ 1 unless gradients cancel: measure it on n well above the batch sizes
  of interest.
* Simple noise scale (McCandlish et al. 2018, "An Empirical Model of
  Large-Batch Training", eq. 2.9 and Appendix A.1): from ‖G_B‖² measured at two
  batch sizes B_small < B_big::

      |G|²  = (B_big ‖G_big‖² − B_small ‖G_small‖²) / (B_big − B_small)
      tr Σ  = (‖G_small‖² − ‖G_big‖²) / (1/B_small − 1/B_big)
      B_simple = tr Σ / |G|²

  Both estimates are unbiased; their ratio is not, so average |G|² and tr Σ over
  several measurements before dividing (:func:`noise_scale` accepts arrays).

Gradients are flattened in ``model.named_parameters()`` order (trainable only).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap


class _LossOf(nn.Module):
    """``forward(x, y) = loss(model, x, y)`` so ``functional_call`` can reach any loss."""

    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model, self._loss = model, loss

    def forward(self, x, y):
        return self._loss(self.model, x, y)


def _default_loss(model, x, y):
    return model.loss(x, y)


def per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_dim: int = 0,
                      loss: Callable | None = None, chunk_size: int | None = None,
                      method: str = "auto") -> torch.Tensor:
    """Per-example gradients of ``loss(model, x_i, y_i)``, flattened: ``[n_examples, n_params]``.

    ``x`` and ``y`` hold n examples along ``batch_dim`` (1 for ``[seq, batch]``
    language-model inputs); each example is passed to the loss with a batch of
    one.  ``loss`` defaults to ``model.loss``.  ``method``: ``"vmap"`` (torch.func
    ``functional_call`` + ``vmap`` + ``grad``), ``"loop"`` (one backward per
    example), or ``"auto"`` (vmap, falling back to loop with a warning for
    modules torch.func cannot batch, such as fused ``nn.LSTM``).
    """
    loss = loss or _default_loss
    wrapped = _LossOf(model, loss)
    names = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    if method in ("auto", "vmap"):
        try:
            with warnings.catch_warnings():  # torch.func's per-op "performance drop" notes (e.g. LSTM)
                warnings.filterwarnings("ignore", message="There is a performance drop")
                return _vmap_grads(wrapped, names, x, y, batch_dim, chunk_size)
        except (RuntimeError, NotImplementedError) as e:
            if method == "vmap":
                raise
            warnings.warn(f"per-example gradients: vmap failed ({str(e).splitlines()[0][:120]}); "
                          "using a per-example loop", RuntimeWarning, stacklevel=2)
    elif method != "loop":
        raise ValueError(f"method {method!r} must be 'auto', 'vmap' or 'loop'")
    return _loop_grads(wrapped, names, x, y, batch_dim)


def _vmap_grads(wrapped, names, x, y, batch_dim, chunk_size):
    params = {n: p.detach() for n, p in wrapped.named_parameters() if n in names}
    buffers = {n: b.detach() for n, b in wrapped.named_buffers()}

    def one(p, xi, yi):
        return functional_call(wrapped, (p, buffers), (xi.unsqueeze(batch_dim), yi.unsqueeze(batch_dim)))

    grads = vmap(grad(one), in_dims=(None, batch_dim, batch_dim), chunk_size=chunk_size)(params, x, y)
    return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in names], dim=1)


def _loop_grads(wrapped, names, x, y, batch_dim):
    params = [p for n, p in wrapped.named_parameters() if n in names]
    rows = []
    for i in range(x.shape[batch_dim]):
        xi, yi = x.narrow(batch_dim, i, 1), y.narrow(batch_dim, i, 1)
        gs = torch.autograd.grad(wrapped(xi, yi), params, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(gs, params, strict=True)]))
    return torch.stack(rows)


def gradient_diversity(G: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """``(Δ_S, B_S)`` for per-example gradients ``G`` [n, n_params] (Yin et al. 2018, Def. 1).

    Δ_S = Σ‖g_i‖² / ‖Σ g_i‖² and the batch bound B_S = n · Δ_S; ``inf`` when the
    gradients sum to zero.
    """
    G = torch.as_tensor(G, dtype=torch.float64)
    sum_sq = float((G * G).sum())
    sq_sum = float(G.sum(0).pow(2).sum())
    delta = sum_sq / sq_sum if sq_sum > 0 else float("inf")
    return delta, G.shape[0] * delta


def noise_scale(sq_norm_small, sq_norm_big, b_small: float, b_big: float) -> dict[str, float]:
    """B_simple from mean-gradient squared norms at two batch sizes (McCandlish et al. 2018, A.1).

    ``sq_norm_small`` / ``sq_norm_big`` are ‖G_B‖² measured at ``b_small`` and
    ``b_big`` (scalars, or arrays of repeated measurements: the two unbiased
    estimates are averaged before their ratio is taken).  Returns ``g2`` (|G|²),
    ``trace_sigma`` (tr Σ, per-example covariance) and ``b_simple`` (tr Σ / |G|²;
    ``inf`` when the |G|² estimate is not positive: noise swamps the signal).
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got b_small={b_small}, b_big={b_big}")
    s, b = np.mean(sq_norm_small), np.mean(sq_norm_big)
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace_sigma = (s - b) / (1 / b_small - 1 / b_big)
    b_simple = trace_sigma / g2 if g2 > 0 else float("inf")
    return {"g2": float(g2), "trace_sigma": float(trace_sigma), "b_simple": float(b_simple)}


def noise_scale_from_grads(G: torch.Tensor | np.ndarray, b_small: int = 1) -> dict[str, float]:
    """B_simple from per-example gradients ``G`` [n, n_params]: B_big = n, B_small = ``b_small``.

    ‖G_small‖² is averaged over the n // b_small disjoint groups of ``b_small``
    rows; ‖G_big‖² is the squared norm of the mean of all n rows.
    """
    G = torch.as_tensor(G, dtype=torch.float64)
    n = G.shape[0]
    groups = n // b_small
    small = G[:groups * b_small].reshape(groups, b_small, -1).mean(1).pow(2).sum(1)
    return noise_scale(small.numpy(), float(G.mean(0).pow(2).sum()), b_small, n)


def grad_stats(model: nn.Module, x, y, batch_dim: int = 0, loss: Callable | None = None,
               chunk_size: int | None = None) -> dict[str, float]:
    """Everything above for one batch: n, Δ_S, B_S, |G|², tr Σ, B_simple (B_small=1, B_big=n)."""
    G = per_example_grads(model, x, y, batch_dim, loss, chunk_size)
    delta, b_s = gradient_diversity(G)
    return {"n": G.shape[0], "delta_s": delta, "b_diversity": b_s, **noise_scale_from_grads(G)}
