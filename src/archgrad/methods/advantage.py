"""AdvantageNAS (Sato, Sakuma & Akimoto, AAAI 2021): sparse propagation with credit assignment.

Sample a ~ p (one op per edge, only it computed). Edge i's reward is its advantage, approximated
from the same backward pass (eq. 7): A_i = (dr/dO_i)^T O_i^j = -dL/da_i^j, the gradient of the
loss with respect to the sampled op's mixing weight. A sampled zero op gets the worst moving-average
advantage of the other ops on its edge (footnote 4; moving average with coefficient 0.05 as in the
official code). Gradient: sum_i A_i grad log p_i(a_i) (Algorithm 1, line 9), unbiased by
Theorem 4.2; theta by Adam; the final architecture by argmax.
"""
from __future__ import annotations

import torch

from ..arch import Softmax
from ..sampling import onehot, score_grads
from ..strategy import AdamUpdate, Strategy
from . import common, register
from .reinforce import OneHotSampler


class Advantage(OneHotSampler):
    joint_ok = True

    def __init__(self, ema_coef: float = 0.05):
        super().__init__()
        self.ema_coef = ema_coef

    def bind(self, groups, costs, device):
        for g in groups:
            self.register_buffer(f"ema_{g.label}", torch.zeros(g.shape, dtype=torch.float64,
                                                               device=device))

    def arch_mix(self, ctx):
        idx = self.sample(ctx)
        return onehot(idx, ctx.arch.groups, ctx.batch[0].device, leaf=True), idx

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in record]

    def advantages(self, arch, record, target_grads) -> dict[str, torch.Tensor]:
        """Per edge: A_i = -dL/da_i^j at the sampled op j; for a sampled zero op, the worst
        moving-average advantage among the other alive ops of the edge."""
        out = {}
        for (k, idx), g in zip(record.items(), target_grads):
            group = arch.groups[k]
            zero = torch.tensor(group.zero_mask)
            rows, j = torch.arange(len(idx)), torch.tensor(idx)
            g = torch.zeros(group.shape, dtype=torch.float64) if g is None \
                else g.detach().double().cpu()
            adv = -g[rows, j]
            ema = getattr(self, f"ema_{k}")
            table = ema.cpu().clone()
            sampled_zero = zero[j]
            r, c = rows[~sampled_zero], j[~sampled_zero]
            table[r, c] = (1 - self.ema_coef) * table[r, c] + self.ema_coef * adv[~sampled_zero]
            if sampled_zero.any():
                others = table.masked_fill(zero[None, :] | ~arch.alive(k).cpu(), float("inf"))
                worst = others.min(-1).values
                worst = torch.where(torch.isfinite(worst), worst, torch.zeros_like(worst))
                adv = torch.where(sampled_zero, worst, adv)
            ema.copy_(table)
            out[k] = adv
        return out

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        adv = self.advantages(ctx.arch, record, target_grads)
        # descent direction of -J: -sum_i A_i grad log p_i(a_i)
        return score_grads(ctx.arch, record, {k: -a for k, a in adv.items()})

    def sample_of(self, record):
        return record


@register("advantage", family="score-function")
def advantage(ema_coef: float = 0.05, arch_lr=3e-4, arch_betas=(0.5, 0.999),
              arch_weight_decay=1e-3, init_scale=1e-3, **options) -> Strategy:
    """AdvantageNAS: sparse propagation, policy gradient with per-edge advantage (eq. 7)."""
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return Strategy("advantage", Advantage(ema_coef), update, bilevel=True, arch_first=False,
                    **common(options))
