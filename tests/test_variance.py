"""AdvantageNAS §4.4: estimator variance for a linear reward r(a) = sum_i r_i^T a_i.

Exact moments by enumerating every architecture of a small space; the paper's closed forms; and
Monte-Carlo estimates from the implemented REINFORCE and AdvantageNAS estimators.
"""
import itertools

import pytest
import torch
from torch import nn

from archgrad.core.arch import ArchParams, Candidate, ChoiceGroup, Softmax
from archgrad.core.strategy import StepContext
from archgrad.methods import make_strategy

E, K = 3, 3
GROUP = ChoiceGroup("cell", tuple(Candidate(f"op{j}") for j in range(K)),
                    tuple((0, i + 1) for i in range(E)))


def _setup(centered: bool):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(E, K, generator=g, dtype=torch.float64)
    mu = torch.softmax(theta, -1)
    r = torch.randn(E, K, generator=g, dtype=torch.float64)
    if centered:  # each edge's contribution has zero mean under mu
        r = r - (r * mu).sum(-1, keepdim=True)
    return theta, mu, r


def exact_moments(mu, r):
    """Mean and E||.||^2 per edge of delta_base = r(a)(a_i - mu_i) and
    delta_adv = (r_i^T a_i)(a_i - mu_i), by enumeration of all K^E architectures."""
    m_base = torch.zeros(E, K, dtype=torch.float64)
    m_adv = torch.zeros_like(m_base)
    s_base = torch.zeros(E, dtype=torch.float64)
    s_adv = torch.zeros_like(s_base)
    eye = torch.eye(K, dtype=torch.float64)
    for arch in itertools.product(range(K), repeat=E):
        p = torch.prod(torch.stack([mu[i, j] for i, j in enumerate(arch)]))
        total = sum(r[i, j] for i, j in enumerate(arch))
        for i, j in enumerate(arch):
            d = eye[j] - mu[i]
            base, adv = total * d, r[i, j] * d
            m_base[i] += p * base
            m_adv[i] += p * adv
            s_base[i] += p * (base @ base)
            s_adv[i] += p * (adv @ adv)
    return m_base, m_adv, s_base, s_adv


@pytest.mark.parametrize("centered", [False, True])
def test_both_estimators_are_unbiased(centered):
    theta, mu, r = _setup(centered)
    m_base, m_adv, _, _ = exact_moments(mu, r)
    t = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.softmax(t, -1) * r).sum(), t)  # grad of J = E[r(a)]
    assert torch.allclose(m_base, grad, atol=1e-12)
    assert torch.allclose(m_adv, grad, atol=1e-12)


def test_closed_forms_with_zero_mean_contributions():
    theta, mu, r = _setup(centered=True)
    _, _, s_base, s_adv = exact_moments(mu, r)
    norm2 = (mu * mu).sum(-1)
    adv_closed = (mu * r ** 2 * (1 - 2 * mu + norm2[:, None])).sum(-1)
    assert torch.allclose(s_adv, adv_closed, atol=1e-12)
    per_edge = (r ** 2 * mu).sum(-1)
    diff_closed = (1 - norm2) * (per_edge.sum() - per_edge)
    assert torch.allclose(s_base - s_adv, diff_closed, atol=1e-12)
    assert (s_base > s_adv).all()  # credit assignment reduces the variance


class LinearReward(nn.Module):
    """A 'supernet' whose output is the linear reward of the architecture it is given:
    sum over edges and computed candidates of w[e, j] * r[e, j]."""

    def __init__(self, r):
        super().__init__()
        self.register_buffer("r", r)

    def forward(self, x, mix):
        w = mix.weights["cell"]
        total = 0.0
        for e in range(E):
            for j in mix.edge_active("cell", e, GROUP.zero_mask):
                total = total + w[e, j] * self.r[e, j]
        return total * torch.ones(x.shape[0], dtype=self.r.dtype)


def _mc(strategy_name, theta, r, n, **opts):
    strat = make_strategy(strategy_name, **opts)
    model = LinearReward(r)
    strat.setup([GROUP], model, seed=0)
    strat.arch = ArchParams([GROUP], Softmax()).double()
    with torch.no_grad():
        strat.arch.theta["cell"].copy_(theta)
    if hasattr(strat.estimator, "bind"):
        strat.estimator.bind([GROUP], None, "cpu")
    x = torch.zeros(1, 1)
    ctx = StepContext(model, strat.arch, lambda out, y: -out.mean(), (x, x), (x, x), [], 0.0,
                      0, 1, 0, 1, strat.generator)
    # the estimators return a descent direction for -J: minus the policy-gradient estimate
    return torch.stack([-strat.estimator.arch_step(ctx).grads["cell"] for _ in range(n)])


@pytest.mark.parametrize("name,kind", [("reinforce", "base"), ("advantage", "adv")])
def test_monte_carlo_estimates_match_the_exact_moments(name, kind):
    theta, mu, r = _setup(centered=True)
    m_base, m_adv, s_base, s_adv = exact_moments(mu, r)
    mean, second = (m_base, s_base) if kind == "base" else (m_adv, s_adv)
    n = 4000
    opts = {"baseline": False} if name == "reinforce" else {}
    d = _mc(name, theta, r, n, **opts)
    se = d.std(0) / n ** 0.5
    assert ((d.mean(0) - mean).abs() <= 5 * se + 1e-9).all()
    sq = (d ** 2).sum(-1)  # per edge ||delta_i||^2
    se2 = sq.std(0) / n ** 0.5
    assert ((sq.mean(0) - second).abs() <= 5 * se2).all()
    print(f"\n{name}: E||delta||^2 per edge exact {second.numpy().round(4)}, "
          f"Monte Carlo {sq.mean(0).numpy().round(4)}")
