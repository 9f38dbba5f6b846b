"""GDAS (Dong & Yang, CVPR 2019): a hard Gumbel-max sample per edge, straight-through gradient.

Per edge the soft sample s = softmax((log p + G) / tau) picks h = onehot(argmax s); the forward
uses h = onehot - s.detach() + s (value one-hot, gradient of s), so only the sampled op is
computed. As in the official code, every other candidate adds its weight h_k (zero in value) to the
edge's output, which gives it the gradient sum(dL/dO). tau decays linearly per epoch from 10 to
0.1. Bi-level; the architecture by Adam with DARTS's settings.
"""
from __future__ import annotations

import torch

from ..arch import Mix, Softmax
from ..errors import ArchgradError
from ..sampling import gumbel
from ..strategy import AdamUpdate, Estimator, StepContext, Strategy
from . import common, register


class HardGumbel(Estimator):
    dense = False

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1,
                 inactive_gradient: bool = True):
        super().__init__()
        if not 0 < tau_min <= tau_max:
            raise ArchgradError("GDAS needs 0 < tau_min <= tau_max")
        self.tau_max, self.tau_min = tau_max, tau_min
        self.inactive_gradient = inactive_gradient

    def tau(self, ctx: StepContext) -> float:
        return self.tau_max - (self.tau_max - self.tau_min) * ctx.epoch / max(ctx.epochs - 1, 1)

    def _sample(self, ctx, log_probs, constant: bool):
        tau = self.tau(ctx)
        weights, active, idx = {}, {}, {}
        for k, lp in log_probs.items():
            g = gumbel(lp.shape, ctx.generator).to(lp.device, lp.dtype)
            soft = torch.softmax((lp + g) / tau, dim=-1)
            i = soft.argmax(-1)
            hard = torch.zeros_like(soft).scatter_(-1, i[:, None], 1.0)
            weights[k] = hard - soft.detach() + soft
            idx[k] = i.tolist()
            active[k] = [(j,) for j in idx[k]]
        return Mix(weights, active, inactive_as_constant=constant), idx

    def weight_mix(self, ctx):
        return self._sample(ctx, {k: v.detach() for k, v in ctx.arch.log_probs().items()},
                            False)[0]

    def arch_mix(self, ctx):
        return self._sample(ctx, ctx.arch.log_probs(), self.inactive_gradient)

    def sample_of(self, record):
        return record


@register("gdas", family="relaxed")
def gdas(tau_max: float = 10.0, tau_min: float = 0.1, inactive_gradient: bool = True,
         arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, init_scale=1e-3,
         **options) -> Strategy:
    """GDAS: hard Gumbel-max sample per edge, straight-through gradient, sparse forward."""
    est = HardGumbel(tau_max, tau_min, inactive_gradient)
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return Strategy("gdas", est, update, bilevel=True, arch_first=False, **common(options))
