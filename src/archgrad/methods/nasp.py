"""NASP (Yao, Xu, Tu & Zhu, AAAI 2020): NAS by proximal iterations.

Continuous parameters a in the box C2 = [0, 1]; the forward uses their proximal projection onto
the discrete set C1, a_bar = prox_C1(a) = onehot(argmax a) per edge. Weight steps compute only the
selected op (sparse); the architecture step computes every candidate with the one-hot weights
(dense), takes the gradient with respect to a_bar and applies it to a, then projects a back onto
the box: a <- prox_C2(a - eps grad_{a_bar} L(a_bar)) (Algorithm 2), clipping to [0, 1]. The step
itself is Adam with DARTS's settings, as the official code uses. During a warm-up (the
architecture frozen) the weight steps train architectures sampled from softmax(a), one op per
edge, as AdvantageNAS's comparison code does in its freeze (util.py mode N, ``nasp_random``),
rather than the one fixed argmax.
"""
from __future__ import annotations

import torch

from ..core.arch import Parameterization
from ..core.sampling import onehot, sample_indices
from ..core.strategy import AdamUpdate, Estimator, Strategy
from . import ADAM_OPTIONS, common, register


class Box(Parameterization):
    """Parameters in [0, 1]; initialised at 0.5 + scale * N(0, 1). As a distribution (for
    entropy and reporting) each row is normalised to sum to one."""

    name = "box"

    def __init__(self, init_scale: float = 1e-3):
        self.init_scale = init_scale

    def init(self, shape, generator):
        return (0.5 + self.init_scale * torch.randn(shape, generator=generator)).clamp(0, 1)

    def concentrated(self, shape, index):
        return torch.zeros(shape).scatter_(1, index.view(-1, 1), 1.0)

    def probs(self, theta, alive, group=None):
        t = theta.clamp_min(0) * alive
        s = t.sum(-1, keepdim=True)
        uniform = alive / alive.sum(-1, keepdim=True)
        return torch.where(s > 0, t / s.clamp_min(1e-12), uniform)


def _argmax(arch) -> dict[str, list[int]]:
    return {k: v.detach().masked_fill(~arch.alive(k), -1.0).argmax(-1).tolist()
            for k, v in arch.theta.items()}


class Proximal(Estimator):
    joint_ok = False
    eval_mode = "the projected architecture prox_C1(a) (argmax per edge), as NASP trains it"

    def weight_mix(self, ctx):  # prox_C1: one op per edge, only it computed
        if ctx.warmup:  # the freeze of AdvantageNAS's comparison code: a ~ softmax(a)
            probs = {k: torch.softmax(t.detach().masked_fill(~ctx.arch.alive(k), -float("inf")),
                                      -1) for k, t in ctx.arch.theta.items()}
            return onehot(sample_indices(probs, ctx.generator), ctx.arch.groups,
                          ctx.batch[0].device)
        return onehot(_argmax(ctx.arch), ctx.arch.groups, ctx.batch[0].device)

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        dev = next(iter(arch.theta.values())).device
        return onehot(_argmax(arch), arch.groups, dev)

    def arch_mix(self, ctx):
        idx = _argmax(ctx.arch)
        mix = onehot(idx, ctx.arch.groups, ctx.batch[0].device, leaf=True)
        mix.active = ctx.arch.dense_active()  # dense: dL/da_bar for every candidate
        return mix, idx

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in record]

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        return {k: (g.detach() if g is not None else torch.zeros_like(ctx.arch.theta[k]))
                for k, g in zip(record, target_grads)}

    def sample_of(self, record):
        return record


class ProximalAdam(AdamUpdate):
    def step(self, grads, ctx=None):
        super().step(grads, ctx)
        with torch.no_grad():  # prox_C2: projection onto the box [0, 1]
            for t in self.arch.theta.values():
                t.clamp_(0.0, 1.0)
        return {}


@register("nasp", family="proximal", adam=True, sources={
    "weights": "DARTS's (NASP §4.1 follows DARTS's training settings)",
    "arch": "NASP §4.1 / official code: Adam with DARTS's settings on the box parameters; "
            "init 0.5 + 1e-3 N(0,1) here (a point inside C2)",
    "schedule": "NASP Algorithm 2: bi-level, weight step on the projected architecture",
    "*": "NASP (Yao et al. 2020)"})
def nasp(**options) -> Strategy:
    """NASP: one-hot projection in the forward pass, proximal step on continuous parameters."""
    o = {k: options.pop(k, ADAM_OPTIONS[k]) for k in ADAM_OPTIONS}
    update = ProximalAdam(o["arch_lr"], o["arch_betas"], o["arch_weight_decay"],
                          Box(o["init_scale"]), grad_clip=o["arch_grad_clip"],
                          lr_schedule=o["arch_lr_schedule"])
    return Strategy("nasp", Proximal(), update, bilevel=True, arch_first=False, **common(options))
