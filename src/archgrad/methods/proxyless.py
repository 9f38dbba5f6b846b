"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): binarised path gates, two sampled paths per edge.

Architecture step ('two' mode of the official code): per edge sample two distinct candidates from
p, renormalise their probabilities p~ over the pair, and open the gate g of one of them drawn from
p~. The forward computes the pair; the open gate's op passes (weight 1), the other is computed
with weight 0 so that dL/dg_j = <dL/dO, O_j> is available for both. BinaryConnect-style gradient
(eq. 4 of the paper, restricted to the pair): dL/dalpha_i = sum_j dL/dg_j p~_j (delta_ij - p~_i).
After the Adam step the pair's logits are shifted so that the sum of exp(alpha) over the pair is
unchanged (the official rescaling), which keeps the other candidates' probabilities fixed. The
weight step samples one candidate from p.
"""
from __future__ import annotations

import math

import torch

from ..arch import Mix, Softmax
from ..strategy import AdamUpdate, Strategy
from . import common, register
from .reinforce import OneHotSampler


class BinaryGates(OneHotSampler):
    joint_ok = False

    def __init__(self):
        super().__init__()
        self.pairs: dict[str, list[tuple[int, int]]] = {}

    def arch_mix(self, ctx):
        dev = ctx.batch[0].device
        weights, active, pairs, ptilde = {}, {}, {}, {}
        for k, p in ctx.arch.probs_detached().items():
            p = p.double().cpu()
            n_alive = int((p > 0).sum(-1).min())
            w = torch.zeros(p.shape)
            pk, act, pt = [], [], []
            for e in range(p.shape[0]):
                two = torch.multinomial(p[e], min(2, n_alive), replacement=False,
                                        generator=ctx.generator).tolist()
                if len(two) == 1:
                    two = two * 2
                q = p[e, two] / p[e, two].sum()
                c = int(torch.multinomial(q.float(), 1, generator=ctx.generator))
                w[e, two[c]] = 1.0
                pk.append((two[0], two[1]))
                act.append(tuple(dict.fromkeys(two)))
                pt.append(q)
            weights[k] = w.to(dev).requires_grad_(True)
            active[k], pairs[k], ptilde[k] = act, pk, torch.stack(pt)
        self.pairs = pairs
        return Mix(weights, active), (pairs, ptilde)

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in record[0]]

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        pairs, ptilde = record
        grads = {}
        for (k, pk), g in zip(pairs.items(), target_grads):
            theta = ctx.arch.theta[k]
            g = torch.zeros(theta.shape, dtype=torch.float64) if g is None \
                else g.detach().double().cpu()
            out = torch.zeros(theta.shape, dtype=torch.float64)
            for e, (a, b) in enumerate(pk):
                if a == b:
                    continue
                pair, q = (a, b), ptilde[k][e]
                for i in range(2):
                    for j in range(2):
                        out[e, pair[i]] += g[e, pair[j]] * q[j] * (float(i == j) - q[i])
            grads[k] = out.to(theta.device, theta.dtype)
        return grads

    def sample_of(self, record):
        return None  # a one-hot architecture is never evaluated in the architecture step


class ProxylessUpdate(AdamUpdate):
    """Adam, then the pair's logits shifted to keep sum(exp) over the pair (official rescale)."""

    def __init__(self, estimator: BinaryGates, lr, betas, weight_decay, eps, parameterization):
        super().__init__(lr, betas, weight_decay, parameterization)
        self.eps = eps
        self.estimator = estimator

    def bind(self, arch):
        super().bind(arch)
        for g in self.opt.param_groups:
            g["eps"] = self.eps

    def step(self, grads, ctx=None):
        old = {k: self.arch.theta[k].detach().clone() for k in grads}
        super().step(grads, ctx)
        with torch.no_grad():
            for k, pk in self.estimator.pairs.items():
                th = self.arch.theta[k]
                for e, (a, b) in enumerate(pk):
                    if a == b:
                        continue
                    idx = [a, b]
                    offset = math.log(float(th[e, idx].exp().sum()) /
                                      float(old[k][e, idx].exp().sum()))
                    th[e, idx] -= offset
        return {}


@register("proxyless", family="gates")
def proxyless(arch_lr: float = 1e-3, arch_betas=(0.0, 0.999), arch_eps: float = 1e-8,
              arch_weight_decay: float = 0.0, init_scale: float = 1e-3, **options) -> Strategy:
    """ProxylessNAS: binarised path gates, two sampled paths per edge, BinaryConnect gradient."""
    est = BinaryGates()
    update = ProxylessUpdate(est, arch_lr, arch_betas, arch_weight_decay, arch_eps,
                             Softmax(init_scale))
    return Strategy("proxyless", est, update, bilevel=True, arch_first=False, **common(options))
