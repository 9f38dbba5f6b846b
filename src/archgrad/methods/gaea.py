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

from ..core.arch import EDGE_SUFFIX, Simplex
from ..core.strategy import ArchUpdate, Estimator, Strategy
from . import common, register
from .gdas import HardGumbel
from .pcdarts import DEFAULTS as _PC
from .pcdarts import SOURCES as PCDARTS_SOURCES

#: PC-DARTS's search settings as the GAEA release runs them (configs/cnn/mode/search_pcdarts.yaml:
#: learning_rate_min 0; the release has no architecture warm-up)
PCDARTS_DEFAULTS = {**{k: v for k, v in _PC.items() if k != "arch_lr"}, "lr_min": 0.0,
                    "warmup_epochs": 0}


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

    def settings(self):
        return {"arch_optimizer": "exponentiated gradient", "arch_lr": self.lr,
                "entropic": self.entropic, "floor": self.floor,
                "init": "uniform" if not self.parameterization.init_scale else
                f"uniform x exp({self.parameterization.init_scale:g} N(0,1))"}

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


SOURCES = {"weights": "GAEA release configs/cnn/mode/search_nasbench201.yaml (DARTS's: 0.025 "
           "cosine to 0.001, decay 3e-4, clip 5)",
           "arch": "GAEA release method_edarts_space_nasbench201.yaml (arch lr 0.1, no decay, "
                   "no clip); architect_edarts.py (floor 1e-5, uniform init)",
           "schedule": "GAEA §5; release search.single_level (false: bi-level)",
           "*": "GAEA (Li et al. 2021)"}
HELP = {"arch_lr": "eta of the exponentiated-gradient step",
        "entropic": "lambda of the entropic regulariser lambda * KL(a || uniform)",
        "init_scale": "break ties: a uniform x exp(init_scale N(0,1))"}


@register("gaea-darts", family="gaea", sources=SOURCES, help=HELP)
def gaea_darts(arch_lr: float = 0.1, entropic: float = 0.0, init_scale: float = 0.0,
               **options) -> Strategy:
    """GAEA DARTS: first-order DARTS with exponentiated-gradient updates on the simplex."""
    return _gaea("gaea-darts", Estimator(), bilevel=True, arch_lr=arch_lr, entropic=entropic,
                 init_scale=init_scale, **options)


@register("gaea-darts-single", family="gaea", sources={
    **SOURCES, "schedule": "GAEA §3 (ERM: single level over all the training data); release "
    "search.single_level=true, train_search.py (the architecture step on a batch of its own "
    "from a second shuffled pass, next(iter(valid_queue)), then the weight step: "
    "data_split all-resampled)"}, help=HELP)
def gaea_darts_single(arch_lr: float = 0.1, entropic: float = 0.0, init_scale: float = 0.0,
                      **options) -> Strategy:
    """GAEA DARTS (ERM): single level over all the training data; as the release, the
    architecture steps on a batch of its own (a second shuffled pass), then the weights."""
    options.setdefault("data_split", "all-resampled")
    return _gaea("gaea-darts-single", Estimator(), bilevel=False, arch_lr=arch_lr,
                 entropic=entropic, init_scale=init_scale, **options)


@register("gaea-gdas", family="gaea", sources={
    **SOURCES, "arch": "GAEA release method_egdas_space_nasbench201.yaml (arch lr 0.01, "
    "weight decay 0.01 as the entropic term, tau 10 -> 0.1; its 50 warm-up epochs belong to a "
    "longer search: set warmup_epochs)", "tau_max": "GAEA release egdas config (max_tau 10)",
    "tau_min": "GAEA release egdas config (min_tau 0.1)", "inactive_gradient": "as GDAS"},
    help={**HELP, "tau_max": "initial temperature", "tau_min": "final temperature",
          "inactive_gradient": "straight-through gradient to the unsampled candidates (NB201's "
                               "cell; off on the darts space)"})
def gaea_gdas(arch_lr: float = 0.01, entropic: float = 0.01, tau_max: float = 10.0,
              tau_min: float = 0.1, inactive_gradient: bool = True, init_scale: float = 0.0,
              **options) -> Strategy:
    """GAEA GDAS: GDAS's hard Gumbel samples with exponentiated-gradient updates."""
    return _gaea("gaea-gdas", HardGumbel(tau_max, tau_min, inactive_gradient), bilevel=True,
                 arch_lr=arch_lr,
                 entropic=entropic, init_scale=init_scale, **options)


@register("gaea-pcdarts", family="gaea", defaults=PCDARTS_DEFAULTS, sources={
    **PCDARTS_SOURCES, "arch": "GAEA release method_eedarts_space_pcdarts.yaml "
    "(exponentiated gradient on the operation and edge weights, eta 0.1)",
    "weights": "GAEA release configs/cnn/mode/search_pcdarts.yaml (batch 256, lr 0.1 cosine "
               "to learning_rate_min 0, momentum 0.9, weight decay 3e-4, clip 5)",
    "schedule": "GAEA release (PC-DARTS's 50 epochs, architecture steps from the first: the "
                "release has no warm-up)"},
    help={**HELP, "partial_channels": "K: mixed ops process 1/K of the channels"})
def gaea_pcdarts(arch_lr: float = 0.1, entropic: float = 0.0, partial_channels: int = 4,
                 init_scale: float = 0.0, **options) -> Strategy:
    """GAEA PC-DARTS: partial channels and edge normalisation, exponentiated gradient on both
    the operation and the edge weights."""
    return _gaea("gaea-pcdarts", Estimator(), bilevel=True, arch_lr=arch_lr, entropic=entropic,
                 edge_weights=True, space_defaults={"partial_channels": partial_channels},
                 init_scale=init_scale, **options)
