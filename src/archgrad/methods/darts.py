"""DARTS (Liu, Simonyan & Yang, ICLR 2019): softmax relaxation, pathwise gradient.

* ``darts``        first order, bi-level: the architecture gradient is grad_a L_val(w, a).
* ``darts-2nd``    second order (§2.3, eq. 6-8): grad_a L_val(w', a) - xi * H v with the unrolled
                   weights w' = w - xi (mu m + grad_w L_train(w, a) + lambda w), the step the weight
                   optimizer would take (momentum mu with its buffer m, weight decay lambda), as the
                   official ``architect._compute_unrolled_model``; the Hessian-vector product
                   H v = grad^2_{a,w} L_train(w, a) grad_w' L_val(w', a) by central differences
                   (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps),
                   w+- = w +- eps grad_w' L_val(w', a), eps = 0.01 / ||grad_w' L_val(w', a)||
                   (eq. 8).
* ``darts-single`` single level (§3.3, the baseline of Table 1): weights and architecture from
                   the same batch, one backward, on all of the training data.

Paper defaults: weights SGD (momentum 0.9, lr 0.025 cosine to 0.001, weight decay 3e-4, clip 5);
architecture Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3); logits init 1e-3 N(0, 1);
batch 64, 50 epochs.
"""
from __future__ import annotations

import torch

from ..core.arch import Mix
from ..core.strategy import ArchStepResult, Estimator, StepContext, Strategy, accuracy
from ..errors import ArchgradError
from . import adam_update, common, register

HVP_MODES = ("finite-difference", "exact")


def _clip_total(grads, max_norm: float):
    """Clip a list of gradients to a total norm, as DARTS's ``rnn/architect.py`` ``_clip``: the
    coefficient max_norm / (norm + 1e-6) scales them where it is below 1, and is returned
    whatever its value (the official code scales the implicit term by it unconditionally)."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    coef = max_norm / (norm + 1e-6)  # float64: the gradients keep their own dtype
    scale = torch.clamp(coef, max=1.0)
    return [g * scale.to(g.dtype) for g in grads], coef


class SecondOrder(Estimator):
    """DARTS's unrolled second-order architecture gradient with a finite-difference HVP.

    ``xi``: the virtual step size; ``None`` uses the weights' current learning rate, as the paper
    does. ``eps_scale``: the 0.01 of eps = 0.01 / ||v||. ``hvp``: "finite-difference" (eq. 8, the
    paper's) or "exact" (double backward: grad_a (grad_w L_train(w, a) . v), to measure eq. 8's
    error). ``unroll_clip``: clip the training gradient of the virtual step and the vector v to
    the weights' gradient clip and scale the implicit term by the first clip's coefficient, as
    DARTS's recurrent code does (``rnn/architect.py``; its CNN code clips neither).
    """

    joint_ok = False

    def __init__(self, xi: float | None = None, eps_scale: float = 0.01, unroll: str = "optimizer",
                 hvp: str = "finite-difference", unroll_clip: bool = False):
        super().__init__()
        if unroll not in ("optimizer", "sgd"):
            raise ArchgradError(f"unroll must be 'optimizer' (with the momentum and weight-decay "
                                f"terms, as the official code) or 'sgd' (w - xi grad), got "
                                f"{unroll!r}")
        if hvp not in HVP_MODES:
            raise ArchgradError(f"hvp must be one of {', '.join(HVP_MODES)}, got {hvp!r}")
        self.xi, self.eps_scale, self.unroll = xi, eps_scale, unroll
        self.hvp, self.unroll_clip = hvp, bool(unroll_clip)

    def settings(self):
        return {"xi": "lr" if self.xi is None else self.xi, "eps_scale": self.eps_scale,
                "unroll": self.unroll, "hvp": self.hvp, "unroll_clip": self.unroll_clip}

    @staticmethod
    def unrolled_step(ctx: StepContext, W, grads, xi: float, unroll: str = "optimizer"):
        """The virtual step -xi * d of each weight: d = mu m + g + lambda w with the weight
        optimizer's momentum buffer m (SGD), or d = g (``unroll="sgd"``, or Adam weights)."""
        cfg, opt = ctx.weights_cfg, ctx.weight_opt
        sgd = unroll == "optimizer" and cfg is not None and cfg.optimizer == "sgd"
        out = []
        for w, g in zip(W, grads):
            d = g
            if sgd:
                d = d + cfg.weight_decay * w
                buf = opt.state.get(w, {}).get("momentum_buffer") if opt is not None else None
                if buf is not None:
                    d = d + cfg.momentum * buf
            out.append(-xi * d)
        return out

    def _clip_to(self, ctx: StepContext) -> float | None:
        clip = ctx.weights_cfg.grad_clip if ctx.weights_cfg is not None else None
        return clip if self.unroll_clip and clip else None

    def arch_step(self, ctx: StepContext) -> ArchStepResult:
        model, W, arch = ctx.model, ctx.weights, ctx.arch
        if not W:  # fixed weights: nothing to unroll, the first-order gradient is exact
            return super().arch_step(ctx)
        keys = arch.param_keys()
        thetas = [arch.param(k) for k in keys]
        xi = ctx.lr if self.xi is None else self.xi
        clip = self._clip_to(ctx)
        buffers = {k: b.clone() for k, b in model.named_buffers()}  # BN statistics: no side effects
        w0 = [w.detach().clone() for w in W]
        with torch.no_grad():
            mix_fixed = Mix(arch.probs_detached(), arch.dense_active(), arch.edge_weights())

        def relaxed():
            return Mix(arch.probs(), arch.dense_active(), arch.edge_weights())

        try:
            # w' = w - xi (mu m + grad_w L_train(w, a) + lambda w)
            _, l_train = ctx.forward(mix_fixed, ctx.train_batch)
            g_train = ctx.grad(l_train, W)  # fp16: of the scaled loss, unscaled
            coef = None
            if clip is not None:  # rnn/architect.py _compute_unrolled_model: clipped first
                g_train, coef = _clip_total(g_train, clip)
            with torch.no_grad():
                for w, dw in zip(W, self.unrolled_step(ctx, W, g_train, xi, self.unroll)):
                    w.add_(dw)
            # grad_a L_val(w', a) and v = grad_w' L_val(w', a)
            out, l_val = ctx.forward(relaxed())
            gs = ctx.grad(l_val, thetas + W)
            d_alpha, v = list(gs[:len(thetas)]), gs[len(thetas):]
            v = [torch.zeros_like(w) if g is None else g for w, g in zip(W, v)]
            if clip is not None:  # _backward_step_unrolled: v clipped the same way
                v, _ = _clip_total(v, clip)
            hv = self._hvp_exact(ctx, W, w0, thetas, v, relaxed) if self.hvp == "exact" \
                else self._hvp_fd(ctx, W, w0, thetas, v, relaxed)
            # eq. 7: grad_a L_val(w', a) - xi H v (rnn: xi * clip_coef, as the official code)
            scale = xi if coef is None else xi * coef
            grads = {k: (da if da is not None else torch.zeros_like(t)) - scale * h
                     for k, t, da, h in zip(keys, thetas, d_alpha, hv)}
        finally:
            with torch.no_grad():
                for w, w_init in zip(W, w0):
                    w.copy_(w_init)
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
        return ArchStepResult(grads, {"arch_loss": l_val.detach(),
                                      "arch_acc": accuracy(out, ctx.batch[1])})

    def _hvp_fd(self, ctx, W, w0, thetas, v, relaxed):
        """eq. 8: (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps), w+- = w +- eps v,
        eps = eps_scale / ||v||."""
        # a tensor: no host synchronisation
        eps = (self.eps_scale / torch.sqrt(sum((g.double() ** 2).sum() for g in v))).float()

        def grad_alpha_train_at(sign: float):
            with torch.no_grad():
                for w, w_init, vi in zip(W, w0, v):
                    w.copy_(w_init + sign * eps * vi)
            _, loss = ctx.forward(relaxed(), ctx.train_batch)
            return [g if g is not None else torch.zeros_like(t)
                    for g, t in zip(ctx.grad(loss, thetas), thetas)]

        g_plus = grad_alpha_train_at(+1.0)
        g_minus = grad_alpha_train_at(-1.0)
        return [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]

    @staticmethod
    def _hvp_exact(ctx, W, w0, thetas, v, relaxed):
        """grad^2_{a,w} L_train(w, a) v exactly: grad_a of (grad_w L_train(w, a) . v)."""
        with torch.no_grad():
            for w, w_init in zip(W, w0):
                w.copy_(w_init)
        _, loss = ctx.forward(relaxed(), ctx.train_batch)
        gw = torch.autograd.grad(loss, W, create_graph=True, allow_unused=True)
        dot = sum((g * vi.detach()).sum() for g, vi in zip(gw, v) if g is not None)
        if not torch.is_tensor(dot) or not dot.requires_grad:
            return [torch.zeros_like(t) for t in thetas]
        hv = torch.autograd.grad(dot, thetas, allow_unused=True)
        return [h if h is not None else torch.zeros_like(t) for h, t in zip(hv, thetas)]


SOURCES = {"weights": "DARTS §3.1.2; cnn/train_search.py", "arch": "DARTS §3.1.2; "
           "cnn/train_search.py (Adam betas (0.5, 0.999)); init: model_search.py 1e-3*randn",
           "schedule": "DARTS §3.1.2 (train_portion 0.5, batch 64, 50 epochs)",
           "*": "DARTS (Liu et al. 2019)"}


@register("darts", family="darts", adam=True, sources=SOURCES)
def darts(**options) -> Strategy:
    """DARTS, first order, bi-level (Liu et al. 2019)."""
    update = adam_update(options)
    return Strategy("darts", Estimator(), update, bilevel=True, arch_first=True,
                    **common(options))


@register("darts-2nd", family="darts", adam=True, sources={
    **SOURCES, "xi": "DARTS §2.3: xi = the weights' learning rate",
    "eps_scale": "DARTS eq. 8: eps = 0.01 / ||grad||",
    "unroll": "cnn/architect.py _compute_unrolled_model (momentum and weight-decay terms)",
    "hvp": "DARTS eq. 8 (finite difference); 'exact' is archgrad's, to measure it",
    "unroll_clip": "cnn/architect.py clips nothing; rnn/architect.py clips the unrolled "
                   "gradient and v to the weights' clip (the darts-rnn space turns it on)"},
    help={"xi": "virtual step size (None: the weights' current learning rate)",
          "eps_scale": "finite-difference step: eps = eps_scale / ||v||",
          "unroll": "'optimizer' (w - xi (mu m + g + lambda w), official) or 'sgd' (w - xi g)",
          "hvp": "Hessian-vector product: 'finite-difference' (eq. 8) or 'exact' (double "
                 "backward)",
          "unroll_clip": "clip the virtual step's gradient and v to the weights' grad_clip and "
                         "scale the implicit term by the clip coefficient (DARTS's rnn code)"})
def darts_2nd(xi: float | None = None, eps_scale: float = 0.01, unroll: str = "optimizer",
              hvp: str = "finite-difference", unroll_clip: bool = False,
              **options) -> Strategy:
    """DARTS, second order: unrolled weights and a finite-difference Hessian-vector product."""
    update = adam_update(options)
    return Strategy("darts-2nd", SecondOrder(xi, eps_scale, unroll, hvp, unroll_clip), update,
                    bilevel=True, arch_first=True, **common(options))


@register("darts-single", family="darts", adam=True, sources={
    **SOURCES, "schedule": "DARTS §3.3 / Table 1 single-level baseline: train and "
    "validation data together (all 50k)"})
def darts_single(**options) -> Strategy:
    """DARTS, single level: weights and architecture updated on the same batch."""
    update = adam_update(options)
    return Strategy("darts-single", Estimator(), update, bilevel=False, **common(options))
