"""SNAS (Xie, Zheng, Liu & Lin, ICLR 2019): stochastic NAS with the concrete distribution.

Per edge Z = softmax((log p + G) / lambda) with Gumbel noise G (eq. 5); the search gradient is
pathwise through Z; weights and architecture are updated from the same loss (single level, §3.1).
The temperature is annealed linearly per epoch from ``temp_init`` to ``temp_min`` (the official
code's defaults 1.0 and 0.03). Optional resource constraint (§2.4): the expected cost
E[C(Z)] = sum_e E[Z_e^T C(O_e)] (eqs. 10-11) with per-candidate parameters, FLOPs and memory
access cost (Appendix F), each normalised by its largest value in the group and averaged, its
gradient estimated per edge by the policy gradient C_e(k_e) grad log p_e(k_e) with k_e the sampled
candidate. ``resource_weight`` sets eta of eq. 9; ``"mild"``, ``"moderate"``, ``"aggressive"`` name
three levels calibrated on NAS-Bench-201 (bench/snas_resource.py).
"""
from __future__ import annotations

import torch

from ..arch import Mix, Softmax
from ..costs import CRITERIA, normalized
from ..errors import ArchgradError
from ..sampling import gumbel, score_grads
from ..strategy import AdamUpdate, Estimator, StepContext, Strategy
from . import common, register

RESOURCE_LEVELS = {"none": 0.0, "mild": 0.01, "moderate": 0.03, "aggressive": 0.1}


class GumbelSoftmax(Estimator):
    needs_costs = False

    def __init__(self, temp_init: float = 1.0, temp_min: float = 0.03,
                 resource_weight: float | str = 0.0, resource: str = "all"):
        super().__init__()
        if isinstance(resource_weight, str):
            if resource_weight not in RESOURCE_LEVELS:
                raise ArchgradError(f"resource_weight must be a number or one of "
                                    f"{', '.join(RESOURCE_LEVELS)}, got {resource_weight!r}")
            resource_weight = RESOURCE_LEVELS[resource_weight]
        if resource not in ("all",) + CRITERIA:
            raise ArchgradError(f"resource must be one of all, {', '.join(CRITERIA)}; "
                                f"got {resource!r}")
        if not 0 < temp_min <= temp_init:
            raise ArchgradError("SNAS needs 0 < temp_min <= temp_init")
        self.temp_init, self.temp_min = temp_init, temp_min
        self.resource_weight, self.resource = float(resource_weight), resource
        self.needs_costs = self.resource_weight > 0
        self.costs: dict[str, torch.Tensor] = {}

    def bind(self, groups, costs, device):
        if self.needs_costs:
            if costs is None:
                raise ArchgradError("SNAS's resource constraint needs the space's op costs")
            for k, c in costs.items():
                c = normalized(c)
                c = c.mean(-1) if self.resource == "all" else c[..., CRITERIA.index(self.resource)]
                self.costs[k] = c.to(device)

    def temperature(self, ctx: StepContext) -> float:
        """Linear annealing per epoch from temp_init to temp_min."""
        frac = ctx.epoch / max(ctx.epochs - 1, 1)
        return self.temp_init + (self.temp_min - self.temp_init) * frac

    def _relaxed(self, ctx: StepContext, log_probs):
        lam = self.temperature(ctx)
        z, idx = {}, {}
        for k, lp in log_probs.items():
            g = gumbel(lp.shape, ctx.generator).to(lp.device, lp.dtype)
            logits = (lp + g) / lam
            z[k] = torch.softmax(logits, dim=-1)
            idx[k] = logits.argmax(-1).tolist()  # an exact sample from p (Gumbel-max)
        return z, idx

    def weight_mix(self, ctx):
        z, _ = self._relaxed(ctx, {k: v.detach() for k, v in ctx.arch.log_probs().items()})
        return Mix(z, ctx.arch.dense_active())

    def arch_mix(self, ctx):
        z, idx = self._relaxed(ctx, ctx.arch.log_probs())
        return Mix(z, ctx.arch.dense_active()), idx

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        grads = super().arch_grads(ctx, mix, record, target_grads, loss)
        if self.resource_weight > 0:
            # eq. 11 by policy gradient: eta * C_e(k_e) * grad log p_e(k_e) per edge
            coef = {k: self.resource_weight * self.costs[k][torch.arange(len(v)), torch.tensor(v)]
                    for k, v in record.items()}
            for k, g in score_grads(ctx.arch, record, coef).items():
                grads[k] = grads[k] + g
        return grads

    def sample_of(self, record):
        return record


@register("snas", family="relaxed")
def snas(temp_init: float = 1.0, temp_min: float = 0.03, resource_weight: float | str = 0.0,
         resource: str = "all", bilevel: bool = False, arch_lr=3e-4, arch_betas=(0.5, 0.999),
         arch_weight_decay=1e-3, init_scale=1e-3, **options) -> Strategy:
    """SNAS: Gumbel-softmax relaxation, annealed temperature, single level, optional resource
    constraint (Xie et al. 2019)."""
    est = GumbelSoftmax(temp_init, temp_min, resource_weight, resource)
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    # bilevel=True: architecture steps on the validation half (as NNI's GumbelDARTS does)
    return Strategy("snas", est, update, bilevel=bilevel, **common(options))
