"""P-DARTS (Chen, Xie, Wu & Tian, ICCV 2019): progressive DARTS.

The search runs in stages of increasing depth (5 -> 11 -> 17 cells on the DARTS space, the space's
``progressive_depths`` elsewhere); between stages the weakest candidates of every edge are dropped
(8 -> 5 -> 3 on the DARTS space: 5/8 and 3/8 of the candidates), the supernet is rebuilt deeper and
the architecture parameters are re-initialised over the candidates left. Each stage trains the
weights alone for its first 40% of epochs (10 of 25 in the paper). Dropout follows every skip
connection, at 0.1, 0.4, 0.7 in the three stages (CIFAR-10), decaying linearly to zero within a
stage; the derived normal cell keeps at most two skip connections (the weakest replaced by their
edge's next best op). Architecture Adam lr 6e-4, weight decay 1e-3; weights SGD 0.025 cosine to 0.
"""
from __future__ import annotations

import math

import torch

from ..arch import Softmax
from ..errors import ArchgradError
from ..strategy import AdamUpdate, Estimator, Stage, Strategy
from . import common, register


class ProgressiveStrategy(Strategy):
    def __init__(self, *args, stage_depths=None, keep=None, skip_dropout=(0.1, 0.4, 0.7),
                 stage_warmup=0.4, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_depths, self.keep = stage_depths, keep
        self.skip_dropout, self.stage_warmup = tuple(skip_dropout), stage_warmup

    @property
    def min_epochs(self) -> int:
        return len(self.skip_dropout)

    def plan(self, epochs, space_cls=None):
        n = len(self.skip_dropout)
        if epochs < n:
            raise ArchgradError(f"pdarts runs {n} stages and needs at least {n} epochs, got "
                                f"{epochs}")
        depths = self.stage_depths
        option = getattr(space_cls, "depth_option", None)
        if depths is None and space_cls is not None:
            depths = space_cls.progressive_depths
        bounds = [round(i * epochs / n) for i in range(n + 1)]
        stages = []
        for i in range(n):
            space = {option: depths[i]} if depths and option else {}
            keep = None if i == 0 else i  # resolved against the group size in begin_stage
            length = bounds[i + 1] - bounds[i]
            stages.append(Stage(bounds[i], bounds[i + 1], space, keep,
                                min(int(round(self.stage_warmup * length)), length - 1)))
        return stages

    def _keep_count(self, index: int, n_candidates: int) -> int:
        if self.keep is not None:
            return int(self.keep[index - 1])
        fractions = (5 / 8, 3 / 8)  # 8 -> 5 -> 3 on the DARTS space
        return max(1, math.ceil(n_candidates * fractions[min(index - 1, len(fractions) - 1)]))

    @torch.no_grad()
    def begin_stage(self, index, stage, model):
        pruned = 0
        probs = self.arch.probs_detached()
        for label, g in self.arch.groups.items():
            k = self._keep_count(index, g.shape[1])
            p = probs[label].masked_fill(~self.arch.alive(label), -1.0)
            order = p.argsort(dim=-1, descending=True)
            drop = torch.zeros_like(self.arch.alive(label))
            drop.scatter_(1, order[:, k:], True)
            pruned += self.arch.kill(label, drop)
        # a fresh start for the architecture over the remaining candidates
        gen = torch.Generator().manual_seed(self.seed + 1000 * index)
        for label, g in self.arch.groups.items():
            self.arch.theta[label].copy_(self.update.parameterization.init(g.shape, gen))
        self.update.bind(self.arch)
        self.attach(model)
        return {"n_pruned": pruned}

    def step(self, train_batch, valid_batch, *, epoch, epochs, **kw):
        _, st = self.stage_of(epoch, epochs)
        i = self.stages_for(epochs).index(st)
        rate = self.skip_dropout[i] * (st.end - epoch - 1) / max(st.end - st.start, 1)
        self.estimator.op_dropout = {"skip_connect": rate} if rate > 0 else {}
        return super().step(train_batch, valid_batch, epoch=epoch, epochs=epochs, **kw)


@register("pdarts", family="darts")
def pdarts(stage_depths=None, keep=None, skip_dropout=(0.1, 0.4, 0.7), stage_warmup: float = 0.4,
           max_skip: int = 2, arch_lr: float = 6e-4, arch_betas=(0.5, 0.999),
           arch_weight_decay: float = 1e-3, init_scale: float = 1e-3, **options) -> Strategy:
    """P-DARTS: progressive depth, candidate pruning between stages, skip-connection dropout and
    a cap on skip connections."""
    options.setdefault("lr_min", 0.0)
    opts = common(options)
    opts.setdefault("derive_options", {})["max_skip"] = max_skip
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return ProgressiveStrategy("pdarts", Estimator(), update, bilevel=True, arch_first=True,
                               stage_depths=stage_depths, keep=keep, skip_dropout=skip_dropout,
                               stage_warmup=stage_warmup, **opts)
