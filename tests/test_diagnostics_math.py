"""Diagnostics on tiny cases worked out by hand: angles, traversal, confusion, NTK, trends."""
import math

import pytest
import torch
from torch import nn

from perfmodel.diagnostics import confusion, ntk, traversal, trends

# ---------------------------------------------------------------- angle and traversal

def test_angle_of_gradient_parallel_to_start_line_is_zero_or_pi():
    d = torch.tensor([3.0, -4.0, 0.5])
    assert traversal.angle(d, 2.5 * d) == pytest.approx(0.0, abs=1e-6)
    assert traversal.angle(d, -0.1 * d) == pytest.approx(math.pi, abs=1e-6)
    assert traversal.angle(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 7.0])) == pytest.approx(math.pi / 2)
    assert math.isnan(traversal.angle(torch.zeros(3), d))  # at W_0 there is no start line


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(3, 2)
        self.hidden = nn.Linear(2, 2, bias=False)
        self.head = nn.Linear(2, 1, bias=False)


def test_layer_groups_of_charlm_and_mlp():
    from perfmodel.torchmodels import build_module
    g = traversal.layer_groups(build_module("charlm", 8, depth=2, vocab=5))
    assert g["embedding"] == ["embedding.weight"]
    assert g["output"] == ["softmax.weight", "softmax.bias"]
    assert set(g["hidden"]) == {"rhn.input_proj.weight", "rhn.input_proj.bias",
                                *(f"rhn.recurrent.{i}.{k}" for i in range(2) for k in ("weight", "bias"))}
    assert len(g["all"]) == 1 + 2 + 2 + 4
    g = traversal.layer_groups(build_module("mlp", 8, depth=2))
    assert g["embedding"] == [] and g["output"] == ["head.weight", "head.bias"]


def test_traversal_of_constant_gradient_sgd_is_a_straight_line_pointing_back():
    # W_t = W_0 - t*lr*g: displacement -t*lr*g is antiparallel to g, so A_s = pi;
    # ||W_T - W_0|| = T*lr*||g|| = path length; step size = lr*||g||.
    torch.manual_seed(0)
    m = Tiny()
    tr = traversal.Traversal(m)
    lr, T = 0.1, 5
    g = {n: torch.randn_like(p) for n, p in m.named_parameters()}
    norm_g = math.sqrt(sum(float(v.square().sum()) for v in g.values()))
    with torch.no_grad():
        for t in range(1, T + 1):
            for n, p in m.named_parameters():
                p.grad = g[n].clone()
                p -= lr * p.grad
            tr(t, m, 0.0)
    s = tr.summary()["all"]
    assert s["direct_distance"] == pytest.approx(T * lr * norm_g, rel=1e-5)
    assert s["path_length"] == pytest.approx(T * lr * norm_g, rel=1e-5)
    assert s["step_size"] == pytest.approx(lr * norm_g, rel=1e-5)
    assert s["angle"] == pytest.approx(math.pi, abs=1e-3)


def test_traversal_two_hand_steps_per_group():
    # head weight w = [0, 0] moves by a = [3, 4] then b = [0, -4]:
    # direct ||a + b|| = 3, path ||a|| + ||b|| = 5 + 4 = 9, step size 4.5.
    # Angle at W_1: displacement a = [3, 4], gradient g_1 = [-4, 3] (orthogonal) -> pi/2.
    m = Tiny()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    tr = traversal.Traversal(m)
    head = m.head.weight
    with torch.no_grad():
        head += torch.tensor([[3.0, 4.0]])
        head.grad = torch.tensor([[1.0, 1.0]])
        tr(1, m)
        head += torch.tensor([[0.0, -4.0]])
        head.grad = torch.tensor([[-4.0, 3.0]])
        tr(2, m)
    s = tr.summary()
    assert s["output"]["direct_distance"] == pytest.approx(3.0)
    assert s["output"]["path_length"] == pytest.approx(9.0)
    assert s["output"]["step_size"] == pytest.approx(4.5)
    assert s["output"]["angle"] == pytest.approx(math.pi / 2)
    assert s["embedding"]["path_length"] == 0.0 and math.isnan(s["embedding"]["angle"])
    assert s["all"]["direct_distance"] == pytest.approx(3.0)


# ---------------------------------------------------------------- gradient confusion

def test_confusion_of_three_hand_gradients():
    # pairs: <g1,g2> = 0, <g1,g3> = -1, <g2,g3> = 0  ->  eta = 1, one pair of three negative
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    c = confusion.gradient_confusion(G)
    assert c["confusion"] == 1.0 and c["min_inner"] == -1.0
    assert c["confusion_cos"] == pytest.approx(1.0) and c["frac_negative"] == pytest.approx(1 / 3)
    assert c["mean_sq_norm"] == pytest.approx(1.0)
    # scaling gradients by 3 scales inner products by 9, leaves cosines alone
    c3 = confusion.gradient_confusion(3 * G)
    assert c3["confusion"] == pytest.approx(9.0) and c3["confusion_cos"] == pytest.approx(1.0)


def test_confusion_is_zero_for_aligned_gradients_and_rejects_one_example():
    c = confusion.gradient_confusion(torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]]))
    assert c["confusion"] == 0.0 and c["frac_negative"] == 0.0
    with pytest.raises(ValueError):
        confusion.gradient_confusion(torch.ones(1, 4))


# ---------------------------------------------------------------- NTK and teacher-student

def test_ntk_of_one_unit_linear_net_by_hand():
    # u(x) = v <w, x>, w = [1, 0], v = 2, X = I:
    # H_ij = <w,x_i><w,x_j> + v^2 <x_i,x_j> = [[1 + 4, 0], [0, 0 + 4]]
    s = ntk.Student(2, 1, "linear", 2)
    with torch.no_grad():
        s.hidden[0].copy_(torch.tensor([[1.0, 0.0]]))
        s.output.copy_(torch.tensor([2.0]))
    H = ntk.ntk_gram(s, torch.eye(2, dtype=torch.float64))
    assert torch.allclose(H, torch.tensor([[5.0, 0.0], [0.0, 4.0]], dtype=torch.float64))


def test_ntk_of_two_layer_linear_net_matches_closed_form():
    # H_ij = sum_l (<W_l, X_i><W_l, X_j> + v_l^2 <X_i, X_j>)
    g = torch.Generator().manual_seed(3)
    s = ntk.Student(4, 6, "linear", 2, generator=g)
    X = torch.randn(5, 4, generator=g, dtype=torch.float64)
    W, v = s.hidden[0].detach(), s.output.detach()
    expected = torch.zeros(5, 5, dtype=torch.float64)
    for i in range(5):
        for j in range(5):
            expected[i, j] = sum(float(W[k] @ X[i]) * float(W[k] @ X[j]) + float(v[k]) ** 2 * float(X[i] @ X[j])
                                 for k in range(6))
    assert torch.allclose(ntk.ntk_gram(s, X), expected)


def test_student_parameter_counts():
    assert sum(p.numel() for p in ntk.Student(50, 8, "relu", 2).parameters()) == 50 * 8 + 8
    assert sum(p.numel() for p in ntk.Student(50, 8, "relu", 3).parameters()) == 50 * 8 + 8 * 8 + 8
    assert sum(p.numel() for p in ntk.Student(50, 8, "relu", 2, scalar=True).parameters()) == 50 * 8 + 8 + 1


def test_convergence_rate_of_a_geometric_curve():
    # L_t = 5 * 0.97^t  ->  1 - L_{t+1}/L_t = 0.03 everywhere
    L = 5 * 0.97 ** torch.arange(400, dtype=torch.float64)
    r = ntk.convergence_rate(L.numpy())
    assert r["rate"] == pytest.approx(0.03, rel=1e-9) and r["region"] == "steady"
    assert math.isnan(ntk.convergence_rate([1.0, float("nan"), 0.5, 0.2])["rate"])


def test_wide_linear_student_converges_at_the_ntk_rate():
    # Near the kernel regime the late rate approaches 1 - (1 - eta*lambda_min)^2.
    X, y = ntk.teacher_data(10, "linear", seed=0)
    s = ntk.Student(ntk.INPUT_DIM, 2048, "linear", 2, generator=torch.Generator().manual_seed(0))
    ev = torch.linalg.eigvalsh(ntk.ntk_gram(s, X))
    eta = 1 / float(ev[-1])
    losses = ntk.gradient_descent(s, X, y, eta, 3000)
    pred = 1 - (1 - eta * float(ev[0])) ** 2
    assert ntk.convergence_rate(losses)["rate"] == pytest.approx(pred, rel=0.15)


# ---------------------------------------------------------------- trends

def test_loglog_slope_with_hand_interval():
    # ln w = 0, 1, 2 and ln y = 0, 1, 3: slope Sxy/Sxx = 3/2; residuals 1/6, -1/3, 1/6,
    # SSE = 1/6, s^2 = SSE/(n-2) = 1/6, stderr = sqrt(s^2/Sxx) = sqrt(1/12),
    # 95% half-width = t_{0.975, 1} * stderr = 12.7062 * 0.288675 = 3.6679
    fit = trends.loglog_slope([1, math.e, math.e ** 2], [1, math.e, math.e ** 3])
    assert fit["slope"] == pytest.approx(1.5)
    assert fit["lo"] == pytest.approx(1.5 - 3.6679, abs=1e-3)
    assert fit["hi"] == pytest.approx(1.5 + 3.6679, abs=1e-3)
    assert fit["n"] == 3


def test_exact_power_and_log_laws_and_verdicts():
    w = [64, 128, 256, 512, 64, 128, 256, 512]
    fit = trends.loglog_slope(w, [3 * x ** 0.5 for x in w])
    assert fit["slope"] == pytest.approx(0.5) and fit["hi"] - fit["lo"] == pytest.approx(0, abs=1e-9)
    assert trends.verdict(fit, 0.5) == "grows, consistent with exponent 0.5"
    assert trends.semilog_slope(w, [2 - 0.7 * math.log(x) for x in w])["slope"] == pytest.approx(-0.7)
    assert trends.verdict(trends.loglog_slope(w, [1 / x for x in w])) == "shrinks"
    dropped = trends.loglog_slope([1, 2, 4], [0.0, 2.0, 4.0])  # y <= 0 cannot enter a log fit
    assert dropped["n"] == 2 and dropped["slope"] == pytest.approx(1.0)


def test_mean_interval_by_hand():
    # mean 2, sd 1, n 3: half-width t_{0.975, 2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    m = trends.mean_interval([1.0, 2.0, 3.0, float("nan")])
    assert m["mean"] == 2.0 and m["n"] == 3
    assert m["hi"] - 2.0 == pytest.approx(2.4841, abs=1e-3)


def test_width_trends_keys_and_depth_axis():
    rows = [{"width": w, "depth": d, "a": w * d} for w in (1, 2, 4) for d in (1, 2)]
    t = trends.width_trends(rows, ["a"])
    assert t["a"]["loglog"]["slope"] == pytest.approx(1.0) and t["a"]["loglog"]["level"] == 0.95
    assert trends.width_trends(rows, ["a"], x="depth")["a"]["loglog"]["slope"] == pytest.approx(1.0)
    assert set(trends.width_trends(rows, ["a"], by="depth")) == {"a@depth=1", "a@depth=2"}


def test_teacher_student_studies_run_small():
    res = ntk.convergence_study(("linear",), widths=(8, 16), seeds=2, n=10, steps=200, progress=False)
    assert len(res["rows"]) == 4
    assert all(r["rate"] > 0 and r["ntk_lambda_min"] > 0 for r in res["rows"])
    assert {"linear/rate", "linear/rate_pred", "linear/ntk_lambda_min"} <= set(res["trends"])
    mom = ntk.momentum_study(width=8, seeds=2, n=10, ps=(2,), steps=200, target=1e-2, progress=False)
    assert [r["variant"] for r in mom["rows"][:3]] == ["gd", "gd+scalar", "momentum"]
    assert mom["summary"]["l2/momentum"]["n"] == 2


def test_paired_fit_removes_group_offsets():
    # groups A: (x, y) = (0, 0), (1, 1); B: (0, 5), (1, 6).  Pooled: slope Sxy/Sxx = 1/1 = 1 with
    # residuals +-2.5 (wide interval); within groups the points lie on slope 1 exactly.
    e = math.e
    w, y = [1, e, 1, e], [1, e, e ** 5, e ** 6]
    pooled = trends.loglog_slope(w, y)
    paired = trends.loglog_slope(w, y, groups=["A", "A", "B", "B"])
    assert pooled["slope"] == pytest.approx(1.0) and pooled["hi"] - pooled["lo"] > 10
    assert paired["slope"] == pytest.approx(1.0) and paired["groups"] == 2
    # n - groups - 1 = 1 degree of freedom, zero residual: a zero-width interval
    assert paired["lo"] == pytest.approx(1.0) and paired["hi"] == pytest.approx(1.0)
