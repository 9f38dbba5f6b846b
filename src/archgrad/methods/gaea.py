"""GAEA (Li, Khodak, Balcan & Talwalkar, ICLR 2021): geometry-aware exponentiated gradient.

Architecture parameters live on the probability simplex of each decision and are the mixing
weights themselves; they are updated by exponentiated gradient, i.e. mirror descent with the
entropic mirror map: a <- a * exp(-eta * grad_a L), normalised per edge (and per node for edge
weights). As the official release does, entries are floored at 1e-5 before normalising, and an
optional entropic regulariser lambda * KL(a || uniform) is added to the loss. The update rule
combines with first-order DARTS (bi-level and single level), GDAS and PC-DARTS. Settings of the
official release's NAS-Bench-201 / PC-DARTS configs: eta = 0.1 for DARTS and PC-DARTS (alphas and
edge weights), eta = 0.01 with lambda = 0.01 for GDAS (whose config also freezes the architecture
for 50 warm-up epochs of a longer search; set warmup_epochs to match).
"""
from __future__ import annotations

import math

import torch

from ..arch import EDGE_SUFFIX, Simplex
from ..strategy import ArchUpdate, Estimator, Strategy
from . import common, register
from .gdas import HardGumbel
from .pcdarts import PartialChannels


class ExponentiatedGradient(ArchUpdate):
    """Mirror descent on the simplex: a_{t+1} = a_t exp(-eta g) / Z (row-wise)."""

    def __init__(self, lr: float = 0.1, entropic: float = 0.0, floor: float = 1e-5,
                 init_scale: float = 0.0):
        self.lr, self.entropic, self.floor = lr, entropic, floor
        self.parameterization = Simplex(init_scale)

    def _rows(self, key):
        """(index matrix, mask) grouping the entries normalised together."""
        p = self.arch.param(key)
        if key.endswith(EDGE_SUFFIX):
            nodes = self.arch.nodes(key[:-len(EDGE_SUFFIX)])
            n = max(len(v) for v in nodes)
            idx = torch.tensor([v + [v[0]] * (n - len(v)) for v in nodes], device=p.device)
            mask = torch.tensor([[True] * len(v) + [False] * (n - len(v)) for v in nodes],
                                device=p.device)
            return idx, mask
        return None, self.arch.alive(key)

    @torch.no_grad()
    def step(self, grads, ctx=None):
        for key, g in grads.items():
            p = self.arch.param(key)
            idx, mask = self._rows(key)
            a = p if idx is None else p[idx]
            g = g.to(p.dtype)
            g = g if idx is None else g[idx]
            if self.entropic:  # gradient of lambda * sum a log(a K)
                K = mask.sum(-1, keepdim=True)
                g = g + self.entropic * (torch.log(a.clamp_min(1e-30) * K) + 1)
            logits = torch.log(a.clamp_min(1e-30)) - self.lr * g
            q = torch.softmax(logits.masked_fill(~mask, -math.inf), dim=-1)
            q = torch.where(mask, q.clamp_min(self.floor), torch.zeros_like(q))
            q = q / q.sum(-1, keepdim=True)
            if idx is None:
                p.copy_(q)
            else:
                p.index_put_((idx[mask],), q[mask])
        return {}


def _gaea(name, estimator, *, bilevel, arch_lr, entropic, edge_weights=False,
          space_defaults=None, init_scale=0.0, **options):
    update = ExponentiatedGradient(arch_lr, entropic, init_scale=init_scale)
    return Strategy(name, estimator, update, bilevel=bilevel, arch_first=True,
                    edge_weights=edge_weights, space_defaults=space_defaults, **common(options))


@register("gaea-darts", family="gaea")
def gaea_darts(arch_lr: float = 0.1, entropic: float = 0.0, init_scale: float = 0.0,
               **options) -> Strategy:
    """GAEA DARTS: first-order DARTS with exponentiated-gradient updates on the simplex."""
    return _gaea("gaea-darts", Estimator(), bilevel=True, arch_lr=arch_lr, entropic=entropic,
                 init_scale=init_scale, **options)


@register("gaea-darts-single", family="gaea")
def gaea_darts_single(arch_lr: float = 0.1, entropic: float = 0.0, init_scale: float = 0.0,
                      **options) -> Strategy:
    """GAEA DARTS (ERM): single level, weights and architecture from the same batch."""
    return _gaea("gaea-darts-single", Estimator(), bilevel=False, arch_lr=arch_lr,
                 entropic=entropic,
                 init_scale=init_scale, **options)


@register("gaea-gdas", family="gaea")
def gaea_gdas(arch_lr: float = 0.01, entropic: float = 0.01, tau_max: float = 10.0,
              tau_min: float = 0.1, init_scale: float = 0.0, **options) -> Strategy:
    """GAEA GDAS: GDAS's hard Gumbel samples with exponentiated-gradient updates."""
    return _gaea("gaea-gdas", HardGumbel(tau_max, tau_min), bilevel=True, arch_lr=arch_lr,
                 entropic=entropic, init_scale=init_scale, **options)


@register("gaea-pcdarts", family="gaea")
def gaea_pcdarts(arch_lr: float = 0.1, entropic: float = 0.0, partial_channels: int = 4,
                 init_scale: float = 0.0, **options) -> Strategy:
    """GAEA PC-DARTS: partial channels and edge normalisation, exponentiated gradient on both
    the operation and the edge weights."""
    options.setdefault("lr", 0.1)
    options.setdefault("lr_min", 0.0)
    options.setdefault("warmup_epochs", 0.3)
    return _gaea("gaea-pcdarts", PartialChannels(), bilevel=True, arch_lr=arch_lr,
                 entropic=entropic,
                 edge_weights=True, space_defaults={"partial_channels": partial_channels},
                 init_scale=init_scale, **options)
