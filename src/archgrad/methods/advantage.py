"""AdvantageNAS (Sato, Sakuma & Akimoto, AAAI 2021): sparse propagation with credit assignment.

Sample a ~ p (one op per edge, only it computed). Edge i's reward is its advantage, approximated
from the same backward pass (eq. 7): A_i = (dr/dO_i)^T O_i^j = -dL/da_i^j, the gradient of the
loss with respect to the sampled op's mixing weight. A sampled zero op gets the worst moving-average
advantage of the other ops on its edge (footnote 4; moving average with coefficient 0.05 as in the
official code). Gradient: sum_i A_i grad log p_i(a_i) (Algorithm 1, line 9), unbiased by
Theorem 4.2; theta by Adam; the final architecture by argmax.

``estimate="exact"``: the advantage of eq. 6 itself, A_i = r(a) - r((s_i, 0)) = L((s_i, 0)) - L(a),
with one extra forward pass per edge (edge i's mixing weight set to zero, the rest of the sampled
architecture kept): the quantity eq. 7 approximates, for measuring that approximation
(bench/advantage_bias.py). The zero-op rule of footnote 4 applies to both.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..core.sampling import onehot, score_grads
from ..core.strategy import Strategy
from ..errors import ArchgradError
from . import adam_update, common, register
from .reinforce import OneHotSampler


class Advantage(OneHotSampler):
    joint_ok = True

    def __init__(self, ema_coef: float = 0.05, estimate: str = "taylor"):
        super().__init__()
        if estimate not in ESTIMATES:
            raise ArchgradError(f"estimate must be one of {', '.join(ESTIMATES)}, got "
                                f"{estimate!r}")
        self.ema_coef, self.estimate = ema_coef, estimate

    def bind(self, groups, costs, device):
        for g in groups:
            self.register_buffer(f"ema_{g.label}", torch.zeros(g.shape, dtype=torch.float64,
                                                               device=device))

    def arch_mix(self, ctx):
        idx = self.sample(ctx)
        return onehot(idx, ctx.arch.groups, ctx.batch[0].device, leaf=True), idx

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in record]

    def advantages(self, arch, record, target_grads, raw=None) -> dict[str, torch.Tensor]:
        """Per edge: A_i = -dL/da_i^j at the sampled op j (eq. 7; ``raw[label]``: the
        advantages given, eq. 6's); for a sampled zero op, the worst moving-average advantage
        among the other alive ops of the edge."""
        out = {}
        for (k, idx), g in zip(record.items(), target_grads):
            group = arch.groups[k]
            zero = torch.tensor(group.zero_mask)
            rows, j = torch.arange(len(idx)), torch.tensor(idx)
            if raw is not None:
                adv = raw[k].detach().double().cpu()
            else:
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

    @torch.no_grad()
    def exact_advantages(self, ctx, mix, record, loss) -> dict[str, torch.Tensor]:
        """Eq. 6: per edge, L with that edge's output zero (its mixing weight 0) minus L."""
        base = float(loss)
        out = {}
        for k, idx in record.items():
            vals = []
            for e in range(len(idx)):
                w = {key: v.detach() for key, v in mix.weights.items()}
                w[k] = w[k].clone()
                w[k][e] = 0.0
                _, l0 = ctx.forward(replace(mix, weights=w))
                vals.append(float(l0) - base)
            out[k] = torch.tensor(vals, dtype=torch.float64)
        return out

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        raw = self.exact_advantages(ctx, mix, record, loss) if self.estimate == "exact" \
            else None
        adv = self.advantages(ctx.arch, record, target_grads, raw)
        # descent direction of -J: -sum_i A_i grad log p_i(a_i)
        return score_grads(ctx.arch, record, {k: -a for k, a in adv.items()})

    def sample_of(self, record):
        return record


    def settings(self):
        return {"ema_coef": self.ema_coef, "estimate": self.estimate}


ESTIMATES = ("taylor", "exact")


SOURCES = {"weights": "DARTS's, as the other strategies (AdvantageNAS's own NB201 settings, "
           "Nesterov lr 0.1, decay 5e-4, clip 1: the advantagenas-nb201 protocol)",
           "arch": "Adam as DARTS (AdvantageNAS §5.1 toy: Adam 1e-3 betas (0.9, 0.999), the toy "
                   "space's default; NB201: the advantagenas-nb201 protocol); init: official "
                   "util.Param, theta = ones (uniform)",
           "schedule": "AdvantageNAS §5.2: w on D, theta on V (bi-level), weight step then "
                       "architecture step",
           "ema_coef": "AdvantageNAS footnote 4 / official util.py EMA(coef=0.05)",
           "derive": "AdvantageNAS §5.2: argmax",
           "estimate": "AdvantageNAS eq. 7 ('taylor', the paper's method); 'exact': eq. 6 with "
                       "one extra forward pass per edge",
           "*": "AdvantageNAS (Sato et al. 2021)"}


@register("advantage", family="score-function", adam=True, defaults={"init_scale": 0.0},
          sources=SOURCES, help={"ema_coef": "moving-average coefficient of the advantages "
                                             "that stand in for a sampled zero op",
                                 "estimate": "'taylor' (eq. 7, no extra pass) or 'exact' "
                                             "(eq. 6, one extra forward per edge)"})
def advantage(ema_coef: float = 0.05, estimate: str = "taylor", **options) -> Strategy:
    """AdvantageNAS: sparse propagation, policy gradient with per-edge advantage (eq. 7)."""
    return Strategy("advantage", Advantage(ema_coef, estimate), adam_update(options),
                    bilevel=True, arch_first=False, **common(options))
