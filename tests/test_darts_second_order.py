"""DARTS second order: the finite-difference architecture gradient against an exact one.

The exact gradient differentiates through the unrolled step w' = w - xi grad_w L_train(w, a) with
autograd (double backprop), i.e. grad_a L_val(w', a) - xi grad^2_{a,w} L_train(w, a) grad_w' L_val(w', a)
without the finite-difference approximation (DARTS §2.3).
"""
import torch
from torch.func import functional_call

from archgrad.core.arch import Mix
from archgrad.core.strategy import StepContext
from archgrad.methods import make_strategy
from archgrad.spaces import get_space


def _setup(dtype=torch.float64, **opts):
    torch.manual_seed(0)
    space = get_space("nb201", C=3, N=1, num_classes=4, in_channels=2, **opts)
    model = space.supernet().to(dtype)
    strat = make_strategy("darts-2nd", xi=0.1)
    strat.setup(space.choices(), model, seed=0)
    strat.arch.to(dtype)
    with torch.no_grad():  # a non-trivial architecture distribution
        strat.arch.theta["cell"].copy_(torch.randn(6, 5, dtype=dtype))
    g = torch.Generator().manual_seed(1)
    batch = lambda: (torch.randn(8, 2, 6, 6, generator=g, dtype=dtype),
                     torch.randint(0, 4, (8,), generator=g))
    return space, model, strat, batch(), batch()


def _exact(model, strat, train_batch, valid_batch, xi, opt=None):
    theta = strat.arch.theta["cell"]
    names = [n for n, _ in model.named_parameters()]
    w = [p.detach().clone().requires_grad_(True) for _, p in model.named_parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    active = strat.arch.dense_active()

    def loss(weights, batch):
        mix = Mix(strat.arch.probs(), active)
        out = functional_call(model, ({**dict(zip(names, weights)), **buffers}), (batch[0], mix))
        return torch.nn.functional.cross_entropy(out, batch[1])

    g_train = torch.autograd.grad(loss(w, train_batch), w, create_graph=True)
    if opt is None:
        w_unrolled = [wi - xi * gi for wi, gi in zip(w, g_train)]
    else:  # the official unrolled step: w - xi (mu m + g + lambda w)
        cfg = strat.weights_cfg
        bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
        w_unrolled = [wi - xi * (cfg.momentum * m + gi + cfg.weight_decay * wi)
                      for wi, gi, m in zip(w, g_train, bufs)]
    return torch.autograd.grad(loss(w_unrolled, valid_batch), theta)[0]


def _compare(eps_scale, xi=0.1, dtype=torch.float64, **opts):
    space, model, strat, tb, vb = _setup(dtype, **opts)
    strat.estimator.eps_scale = eps_scale
    strat.estimator.xi = xi
    ctx = StepContext(model, strat.arch, space.loss, vb, tb, strat.weight_params, 0.5, 0, 1, 0, 1,
                      strat.generator)
    w_before = [p.detach().clone() for p in model.parameters()]
    fd = strat.estimator.arch_step(ctx).grads["cell"]
    # the estimator leaves the weights as they were
    assert all(torch.equal(a, b) for a, b in zip(w_before, model.parameters()))
    exact = _exact(model, strat, tb, vb, xi=xi)
    first_order = torch.autograd.grad(
        space.loss(model(vb[0], Mix(strat.arch.probs(), strat.arch.dense_active())), vb[1]),
        strat.arch.theta["cell"])[0]
    rel = float((fd - exact).norm() / exact.norm())
    rel_first = float((first_order - exact).norm() / exact.norm())
    return rel, rel_first


def test_second_order_gradient_matches_exact_unrolled_gradient():
    """With a small finite-difference step the implementation reproduces the exact gradient."""
    rel, rel_first = _compare(eps_scale=1e-6)
    print(f"\nDARTS 2nd order vs exact (eps = 1e-6/||v||, float64): relative error {rel:.2e}; "
          f"first order vs exact {rel_first:.2e}")
    assert rel < 1e-6
    assert rel_first > 1e3 * rel  # the second-order term matters in this setting


def test_paper_epsilon_is_accurate_where_the_loss_is_smooth(monkeypatch):
    """At the paper's eps = 0.01/||v|| the central difference is accurate for a smooth network
    (ReLU replaced by softplus). With ReLU, grad_a L_train jumps where an activation flips, and
    a difference quotient across a flip is not a Hessian-vector product: that error is printed
    (it is large on small random problems; see the closing note)."""
    # the reference cell (ReLU modules everywhere), so that the activation can be swapped
    rel_relu, rel_first_relu = _compare(eps_scale=0.01, fused=False)
    monkeypatch.setattr(torch.nn.ReLU, "forward",
                        lambda self, x: torch.nn.functional.softplus(x, beta=5))
    rel, rel_first = _compare(eps_scale=0.01, fused=False)
    print(f"\npaper eps, softplus network: relative error {rel:.2e} (first order {rel_first:.2e}); "
          f"ReLU network: {rel_relu:.2e} (first order {rel_first_relu:.2e})")
    assert rel < 1e-2
    assert rel_first > 10 * rel


def test_xi_defaults_to_the_weight_learning_rate():
    space, model, strat, tb, vb = _setup()
    strat.estimator.eps_scale = 1e-6
    strat2 = make_strategy("darts-2nd", eps_scale=1e-6)
    assert strat2.estimator.xi is None
    strat2.setup(space.choices(), model, seed=0)
    strat2.arch.to(torch.float64)
    with torch.no_grad():
        strat2.arch.theta["cell"].copy_(strat.arch.theta["cell"])
    ctx = StepContext(model, strat2.arch, space.loss, vb, tb, strat2.weight_params, 0.1, 0, 1, 0,
                      1, strat2.generator)
    fd = strat2.estimator.arch_step(ctx).grads["cell"]
    exact = _exact(model, strat2, tb, vb, xi=0.1)
    assert float((fd - exact).norm() / exact.norm()) < 1e-6


def test_second_order_with_momentum_and_weight_decay_matches_exact_unrolled_gradient():
    """The unrolled step the official code takes (momentum buffer and weight decay included)
    against the exact gradient through that step."""
    space, model, strat, tb, vb = _setup()
    strat.estimator.eps_scale = 1e-6
    strat.estimator.xi = 0.1
    opt = strat.weight_opt
    for _ in range(2):  # a momentum buffer
        opt.zero_grad()
        space.loss(model(tb[0], Mix(strat.arch.probs_detached(), strat.arch.dense_active())),
                   tb[1]).backward()
        opt.step()
    ctx = StepContext(model, strat.arch, space.loss, vb, tb, strat.weight_params, 0.5, 0, 1, 0,
                      1, strat.generator, weight_opt=opt, weights_cfg=strat.weights_cfg)
    fd = strat.estimator.arch_step(ctx).grads["cell"]
    exact = _exact(model, strat, tb, vb, xi=0.1, opt=opt)
    plain = _exact(model, strat, tb, vb, xi=0.1)
    assert float((fd - exact).norm() / exact.norm()) < 1e-6
    assert float((plain - exact).norm() / exact.norm()) > 1e-4  # the extra terms matter here
