"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation.

Each mixed op processes 1/K of its input's channels (K = 4; the rest bypass it) and the result is
channel-shuffled; the channels are sampled at random for every forward pass during search (fixed,
the first 1/K, in evaluation). Partial channels are a supernet option (``partial_channels``) that
any strategy can use; ``pcdarts`` turns it on where the space supports it. Edge normalisation: a
second set of architecture parameters beta weights each node's incoming edges through a softmax
over them, and the space's derivation weighs edges by beta with alpha. Architecture by Adam
(lr 6e-4, betas (0.5, 0.999), weight decay 1e-3); weights SGD lr 0.1 cosine to 0; the
architecture frozen for the first 15 of 50 epochs (warmup_epochs=0.3), as the official code.
"""
from __future__ import annotations

import torch

from ..arch import Softmax
from ..strategy import AdamUpdate, Estimator, StepContext, Strategy
from . import common, register


class PartialChannels(Estimator):
    """The DARTS relaxation with edge weights and a fresh channel sample per forward."""

    def _seed(self, ctx: StepContext) -> int:
        return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=ctx.generator))

    def weight_mix(self, ctx):
        mix = super().weight_mix(ctx)
        mix.channel_seed = self._seed(ctx)
        return mix

    def arch_mix(self, ctx):
        mix, record = super().arch_mix(ctx)
        mix.channel_seed = self._seed(ctx)
        return mix, record


@register("pcdarts", family="darts")
def pcdarts(partial_channels: int = 4, arch_lr: float = 6e-4, arch_betas=(0.5, 0.999),
            arch_weight_decay: float = 1e-3, init_scale: float = 1e-3, **options) -> Strategy:
    """PC-DARTS: partial channel connections (1/K of the channels per mixed op) and edge
    normalisation."""
    options.setdefault("lr", 0.1)
    options.setdefault("lr_min", 0.0)
    options.setdefault("warmup_epochs", 0.3)
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return Strategy("pcdarts", PartialChannels(), update, bilevel=True, arch_first=True,
                    edge_weights=True, space_defaults={"partial_channels": partial_channels},
                    **common(options))
