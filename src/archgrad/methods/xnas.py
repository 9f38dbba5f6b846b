"""XNAS (Nayman et al., NeurIPS 2019): NAS with expert advice.

Each edge's candidates are experts with weights v; the mixing weights are v / sum(v) (computed
densely over the experts still alive). The reward of expert i is minus the gradient of the loss
with respect to its mixing weight, clipped to [-L, L]; the update is exponentiated,
v_{t,i} = v_{t-1,i} exp(eta R_{t,i}) (kept as log v). Wipeout: an expert whose weight falls below
theta_t = v_{t,max} exp(-2 eta L (T - t)) cannot catch up with the leader within the T - t steps
left, whatever the rewards, so it is removed for good and never computed again.

The default learning rate is the one that minimises the exponentially weighted forecaster's
regret bound for rewards in [-L, L] over T rounds with N experts, eta = sqrt(2 ln N / T) / L
(Hedge with reward range 2L: ln N / eta + eta T (2L)^2 / 8); T is the number of architecture
steps of the search, N the candidates per edge.
"""
from __future__ import annotations

import math

import torch

from ..core.arch import Mix, Softmax
from ..core.strategy import ArchUpdate, Estimator, StepContext, Strategy
from . import common, register


class ExpertRewards(Estimator):
    """Dense forward with the experts' weights as leaf mixing weights; returns dL/dp."""

    def arch_mix(self, ctx):
        p = {k: v.detach().clone().requires_grad_(True)
             for k, v in ctx.arch.probs_detached().items()}
        return Mix(p, ctx.arch.dense_active()), None

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in ctx.arch.labels()]

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        return {k: (g.detach() if g is not None else torch.zeros_like(mix.weights[k]))
                for k, g in zip(ctx.arch.labels(), target_grads)}


def wipeout_threshold(log_v_max: torch.Tensor, eta: float, L: float, T: int, t: int):
    """log theta_t = log v_{t,max} - 2 eta L (T - t)."""
    return log_v_max - 2.0 * eta * L * (T - t)


class XNASUpdate(ArchUpdate):
    """Exponentiated update of log-weights with clipped rewards, then wipeout."""

    def __init__(self, lr: float | None = None, grad_bound: float = 1.0, wipeout: bool = True):
        self.lr, self.L, self.wipeout = lr, grad_bound, wipeout
        self.parameterization = Softmax(init_scale=0.0)  # theta = log v; v uniform at start

    def eta(self, ctx: StepContext) -> float:
        if self.lr is not None:
            return self.lr
        N = max(g.shape[1] for g in self.arch.groups.values())
        return math.sqrt(2 * math.log(N) / max(ctx.total_arch_steps, 1)) / self.L

    def settings(self):
        return {"arch_optimizer": "exponentiated gradient (expert advice)",
                "arch_lr": "sqrt(2 ln N / T) / L" if self.lr is None else self.lr,
                "grad_bound": self.L, "wipeout": self.wipeout, "init": "uniform"}

    @torch.no_grad()
    def step(self, grads, ctx=None):
        eta = self.eta(ctx)
        T, t = max(ctx.total_arch_steps, 1), ctx.arch_step_index + 1
        wiped = 0
        for k, g in grads.items():
            theta, alive = self.arch.theta[k], self.arch.alive(k)
            reward = -g.to(theta.dtype).clamp(-self.L, self.L)
            theta.add_(eta * reward * alive)
            if self.wipeout:
                top = theta.masked_fill(~alive, -math.inf).max(-1, keepdim=True).values
                below = (theta < wipeout_threshold(top, eta, self.L, T, t)) & alive
                wiped += self.arch.kill(k, below)
        return {"n_wiped": wiped, "eta": eta}


@register("xnas", family="xnas", sources={
    "weights": "DARTS's (XNAS §5 searches with DARTS's settings)",
    "arch": "XNAS §4 / Algorithm 1: exponentiated update with gradient rewards clipped to "
            "[-L, L], wipeout; eta from the regret bound (Theorem 1)",
    "schedule": "XNAS Algorithm 1: bi-level as DARTS",
    "*": "XNAS (Nayman et al. 2019)"},
    help={"grad_bound": "L: rewards are clipped to [-L, L]", "wipeout": "remove experts that "
          "cannot catch up", "arch_lr": "eta (None: the regret-optimal sqrt(2 ln N / T) / L)"})
def xnas(arch_lr: float | None = None, grad_bound: float = 1.0, wipeout: bool = True,
         **options) -> Strategy:
    """XNAS: experts with exponentiated updates on clipped gradient rewards, and wipeout."""
    return Strategy("xnas", ExpertRewards(), XNASUpdate(arch_lr, grad_bound, wipeout),
                    bilevel=True, arch_first=True, **common(options))
