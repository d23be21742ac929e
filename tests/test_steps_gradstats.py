"""Gradient diversity and the gradient noise scale (perfmodel.steps.gradstats), with the arithmetic shown."""
import numpy as np
import pytest
import torch
from torch import nn

from perfmodel.steps.gradstats import gradient_diversity, noise_scale, noise_scale_from_grads, per_example_grads

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_diversity_of_orthogonal_gradients_is_one():
    # g_i = c_i e_i: cross terms vanish, so sum ||g_i||^2 = ||sum g_i||^2 -> Delta_S = 1, B_S = n
    G = torch.diag(torch.tensor([1.0, 2.0, 3.0, 0.5]))
    delta, b_s = gradient_diversity(G)
    assert delta == pytest.approx(1.0) and b_s == pytest.approx(4.0)


def test_diversity_of_identical_gradients_is_one_over_n():
    # n copies of g: sum ||g||^2 = n ||g||^2, ||sum g||^2 = n^2 ||g||^2 -> Delta_S = 1/n, B_S = 1
    G = torch.tensor([[1.0, -2.0, 0.5]]).repeat(5, 1)
    delta, b_s = gradient_diversity(G)
    assert delta == pytest.approx(1 / 5) and b_s == pytest.approx(1.0)


def test_diversity_hand_computed():
    # g1 = (1, 0), g2 = (1, 1): sum of squares 1 + 2 = 3; sum (2, 1) has squared norm 5 -> 3/5
    delta, b_s = gradient_diversity(np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert delta == pytest.approx(3 / 5) and b_s == pytest.approx(6 / 5)
    assert gradient_diversity(np.array([[1.0, 0.0], [-1.0, 0.0]]))[0] == float("inf")  # gradients cancel


def test_noise_scale_two_batch_estimator_is_exact_on_expectations():
    # E||G_B||^2 = |G|^2 + tr(Sigma)/B (McCandlish et al. 2018, A.1).  With |G|^2 = 4, tr(Sigma) = 100:
    # B=2: 4 + 50 = 54; B=50: 4 + 2 = 6.
    # |G|^2 = (50*6 - 2*54) / (50 - 2) = 192/48 = 4;  tr = (54 - 6) / (1/2 - 1/50) = 48/0.48 = 100
    out = noise_scale(54.0, 6.0, 2, 50)
    assert out["g2"] == pytest.approx(4.0) and out["trace_sigma"] == pytest.approx(100.0)
    assert out["b_simple"] == pytest.approx(25.0)
    assert noise_scale(54.0, 1.0, 2, 50)["b_simple"] == float("inf")  # |G|^2 = (50 - 108)/48 < 0
    with pytest.raises(ValueError):
        noise_scale(1.0, 1.0, 8, 8)


def test_noise_scale_on_synthetic_gradients():
    # g_i = G + xi_i, xi ~ N(0, diag(s^2)): |G|^2 = 1, tr(Sigma) = sum s^2 = 20 -> B_simple = 20
    rng = np.random.default_rng(0)
    d, n = 40, 8000
    G = np.zeros(d)
    G[0] = 1.0
    s = np.sqrt(np.linspace(0.1, 0.9, d) * 20 / np.linspace(0.1, 0.9, d).sum())
    g = G + rng.standard_normal((n, d)) * s
    out = noise_scale_from_grads(g)
    assert out["g2"] == pytest.approx(1.0, rel=0.15)
    assert out["trace_sigma"] == pytest.approx(20.0, rel=0.05)
    assert out["b_simple"] == pytest.approx(20.0, rel=0.15)
    assert noise_scale_from_grads(g, b_small=4)["b_simple"] == pytest.approx(20.0, rel=0.2)
    # diversity bound on the same gradients: B_S = (|G|^2 + tr) / (|G|^2 + tr/n) ~ 21/1.0025 ~ 20.9
    assert gradient_diversity(g)[1] == pytest.approx(21 / (1 + 20 / n), rel=0.15)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def loss(self, x, y):
        return ((self.lin(x).sum(-1) - y) ** 2).mean()


def test_per_example_grads_match_autograd():
    torch.manual_seed(0)
    m, x, y = Tiny(), torch.randn(6, 3), torch.randn(6)
    G = per_example_grads(m, x, y)
    assert G.shape == (6, sum(p.numel() for p in m.parameters()))
    for i in range(6):
        m.zero_grad()
        m.loss(x[i:i + 1], y[i:i + 1]).backward()
        ref = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
        torch.testing.assert_close(G[i], ref)
    m.zero_grad()
    m.loss(x, y).backward()  # the batch loss is a mean, so its gradient is the mean of the rows
    torch.testing.assert_close(G.mean(0), torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
    torch.testing.assert_close(per_example_grads(m, x, y, method="loop"), G)


def test_per_example_grads_of_charlm_sequences_batch_dim_1():
    from perfmodel.torchmodels import build_module
    torch.manual_seed(0)
    m = build_module("charlm", 8, vocab=11, seq_len=5, depth=2)
    t = torch.randint(0, 11, (6, 4))  # [seq + 1, batch]
    x, y = t[:-1], t[1:]
    G = per_example_grads(m, x, y, batch_dim=1)
    torch.testing.assert_close(G, per_example_grads(m, x, y, batch_dim=1, method="loop"), atol=1e-5, rtol=1e-4)
