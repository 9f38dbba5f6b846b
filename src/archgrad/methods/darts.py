"""DARTS (Liu, Simonyan & Yang, ICLR 2019): softmax relaxation, pathwise gradient.

* ``darts``        first order, bi-level: the architecture gradient is grad_a L_val(w, a).
* ``darts-2nd``    second order (§2.3): grad_a L_val(w', a) - xi * H v with the unrolled weights
                   w' = w - xi grad_w L_train(w, a) and the Hessian-vector product
                   H v = grad^2_{a,w} L_train(w, a) grad_w' L_val(w', a) approximated by finite
                   differences (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps),
                   w+- = w +- eps grad_w' L_val(w', a), eps = 0.01 / ||grad_w' L_val(w', a)||.
* ``darts-single`` single level: weights and architecture from the same batch, one backward.

Paper defaults: weights SGD (momentum 0.9, lr 0.025 cosine to 0.001, weight decay 3e-4, clip 5);
architecture Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3); logits init 1e-3 N(0, 1).
"""
from __future__ import annotations

import torch

from ..arch import Mix
from ..strategy import AdamUpdate, ArchStepResult, Estimator, StepContext, Strategy, accuracy
from . import common, register


class SecondOrder(Estimator):
    """DARTS's unrolled second-order architecture gradient with a finite-difference HVP.

    ``xi``: the virtual step size; ``None`` uses the weights' current learning rate, as the paper
    does. ``eps_scale``: the 0.01 of eps = 0.01 / ||v||.
    """

    joint_ok = False

    def __init__(self, xi: float | None = None, eps_scale: float = 0.01):
        super().__init__()
        self.xi, self.eps_scale = xi, eps_scale

    def arch_step(self, ctx: StepContext) -> ArchStepResult:
        model, W, arch = ctx.model, ctx.weights, ctx.arch
        if not W:  # fixed weights: nothing to unroll, the first-order gradient is exact
            return super().arch_step(ctx)
        keys = arch.param_keys()
        thetas = [arch.param(k) for k in keys]
        xi = ctx.lr if self.xi is None else self.xi
        buffers = {k: b.clone() for k, b in model.named_buffers()}  # BN statistics: no side effects
        w0 = [w.detach().clone() for w in W]
        with torch.no_grad():
            mix_fixed = Mix(arch.probs_detached(), arch.dense_active(), arch.edge_weights())
        try:
            # w' = w - xi * grad_w L_train(w, a)
            _, l_train = ctx.forward(mix_fixed, ctx.train_batch)
            g_train = torch.autograd.grad(l_train, W)
            with torch.no_grad():
                for w, g in zip(W, g_train):
                    w.sub_(xi * g)
            # grad_a L_val(w', a) and v = grad_w' L_val(w', a)
            out, l_val = ctx.forward(Mix(arch.probs(), arch.dense_active(), arch.edge_weights()))
            gs = torch.autograd.grad(l_val, thetas + W)
            d_alpha, v = list(gs[:len(thetas)]), gs[len(thetas):]
            eps = self.eps_scale / torch.sqrt(sum((g.double() ** 2).sum() for g in v)).item()

            def grad_alpha_train_at(sign: float):
                with torch.no_grad():
                    for w, w_init, vi in zip(W, w0, v):
                        w.copy_(w_init + sign * eps * vi)
                _, loss = ctx.forward(Mix(arch.probs(), arch.dense_active(),
                                          arch.edge_weights()), ctx.train_batch)
                return torch.autograd.grad(loss, thetas)

            g_plus = grad_alpha_train_at(+1.0)
            g_minus = grad_alpha_train_at(-1.0)
            grads = {}
            for k, da, gp, gm in zip(keys, d_alpha, g_plus, g_minus):
                grads[k] = da - xi * (gp - gm) / (2 * eps)
        finally:
            with torch.no_grad():
                for w, w_init in zip(W, w0):
                    w.copy_(w_init)
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
        return ArchStepResult(grads, {"arch_loss": l_val.detach(),
                                      "arch_acc": accuracy(out, ctx.batch[1])})


def _darts(name, estimator, *, bilevel, arch_lr=3e-4, arch_betas=(0.5, 0.999),
           arch_weight_decay=1e-3, init_scale=1e-3, **kw) -> Strategy:
    from ..arch import Softmax
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return Strategy(name, estimator, update, bilevel=bilevel, arch_first=True, **common(kw))


@register("darts", family="darts")
def darts(**options) -> Strategy:
    """DARTS, first order, bi-level (Liu et al. 2019)."""
    return _darts("darts", Estimator(), bilevel=True, **options)


@register("darts-2nd", family="darts")
def darts_2nd(xi: float | None = None, eps_scale: float = 0.01, **options) -> Strategy:
    """DARTS, second order: unrolled weights and a finite-difference Hessian-vector product."""
    return _darts("darts-2nd", SecondOrder(xi, eps_scale), bilevel=True, **options)


@register("darts-single", family="darts")
def darts_single(**options) -> Strategy:
    """DARTS, single level: weights and architecture updated on the same batch."""
    return _darts("darts-single", Estimator(), bilevel=False, **options)
