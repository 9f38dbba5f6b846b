"""GDAS (Dong & Yang, CVPR 2019): a hard Gumbel-max sample per edge, straight-through gradient.

Per edge the soft sample s = softmax((log p + G) / tau) picks h = onehot(argmax s); the forward
uses h = onehot - s.detach() + s (value one-hot, gradient of s), so only the sampled op is
computed. On NAS-Bench-201's cell, as its official code (``NAS201SearchCell.forward_gdas``), every
other candidate adds its weight h_k (zero in value) to the edge's output, which gives it the
gradient sum(dL/dO) (``inactive_gradient``); on the DARTS cell the official code
(``NASNetSearchCell.forward_gdas``) has no such terms, and the darts space turns them off. tau
decays linearly per architecture epoch from 10 to 0.1 (§3.3). Bi-level; the architecture by Adam
with DARTS's settings; 240 epochs (§4.1 and NAS-Bench-201's ``GDAS.config``).
"""
from __future__ import annotations

import torch

from ..core.arch import Mix
from ..core.sampling import gumbel, onehot, sample_indices
from ..core.strategy import Estimator, StepContext, Strategy
from ..errors import ArchgradError
from . import adam_update, common, register


class HardGumbel(Estimator):
    dense = False
    eval_mode = "one architecture sampled from p (hard sample) per validation batch"
    eval_bn = "batch"

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1,
                 inactive_gradient: bool = True):
        super().__init__()
        if not 0 < tau_min <= tau_max:
            raise ArchgradError("GDAS needs 0 < tau_min <= tau_max")
        self.tau_max, self.tau_min = tau_max, tau_min
        self.inactive_gradient = inactive_gradient

    def tau(self, ctx: StepContext) -> float:
        """Linear per epoch from tau_max to tau_min over the epochs with architecture steps
        (GDAS §3.3; exps/algos/GDAS.py ``set_tau(tau_max - (tau_max - tau_min) * epoch /
        (total_epoch - 1))``): after a warm-up, the first architecture epoch starts at
        tau_max. Without a warm-up these are the search's epochs."""
        e, n = ctx.arch_epoch
        return self.tau_max - (self.tau_max - self.tau_min) * e / max(n - 1, 1)

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

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        # argmax of Gumbel-perturbed log-probabilities is a sample from p, at any tau
        gen = generator or torch.Generator().manual_seed(0)
        dev = next(iter(arch.theta.values())).device
        return lambda: onehot(sample_indices(arch.probs_detached(), gen), arch.groups, dev)

    def sample_of(self, record):
        return record

    def settings(self):
        return {"tau_max": self.tau_max, "tau_min": self.tau_min,
                "inactive_gradient": self.inactive_gradient}


DEFAULTS = {"epochs": 240}
SOURCES = {"weights": "GDAS §4.1 (DARTS's: SGD 0.025 cosine to 0.001, momentum 0.9, weight "
           "decay 3e-4, clip 5); NAS-Bench-201's GDAS.config uses Nesterov and 5e-4 (the "
           "nb201-darts-family protocol)",
           "arch": "GDAS §4.1; NAS-Bench-201 GDAS.sh (arch lr 3e-4, weight decay 1e-3), "
                   "exps/algos/GDAS.py (Adam betas (0.5, 0.999), 1e-3*randn)",
           "schedule": "GDAS §4.1 / GDAS.config (240 epochs, batch 64, no warm-up), bi-level",
           "tau_max": "GDAS §4.1 / GDAS.sh: tau 10 -> 0.1, linear per epoch",
           "tau_min": "GDAS §4.1 / GDAS.sh", "inactive_gradient": "official GDAS cell: the "
           "other candidates add their hard weight (straight-through)",
           "*": "GDAS (Dong & Yang 2019)"}


@register("gdas", family="relaxed", adam=True, defaults=DEFAULTS, sources=SOURCES,
          help={"tau_max": "initial Gumbel-softmax temperature", "tau_min": "final temperature",
                "inactive_gradient": "straight-through gradient to the unsampled candidates"})
def gdas(tau_max: float = 10.0, tau_min: float = 0.1, inactive_gradient: bool = True,
         **options) -> Strategy:
    """GDAS: hard Gumbel-max sample per edge, straight-through gradient, sparse forward."""
    est = HardGumbel(tau_max, tau_min, inactive_gradient)
    return Strategy("gdas", est, adam_update(options), bilevel=True, arch_first=False,
                    **common(options))
