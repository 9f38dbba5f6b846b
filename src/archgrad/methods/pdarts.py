"""P-DARTS (Chen, Xie, Wu & Tian, ICCV 2019): progressive DARTS.

The search runs in stages of increasing depth (5 -> 11 -> 17 cells on the DARTS space, the space's
``progressive_depths`` elsewhere; §3.2; a depth given for the space, e.g. ``--cells 8``, is the
first stage's and the later ones add the same increments, 8 -> 14 -> 20, as the official
``--layers`` and ``--add_layers``); between stages the weakest candidates of every edge are
dropped (8 -> 5 -> 3 on the DARTS space: 5/8 and 3/8 of the candidates), the supernet is rebuilt
deeper and the architecture parameters are re-initialised over the candidates left. As the
official ``train_search.py``, every stage builds a new weight optimizer with its own cosine
schedule from 0.025 to 0 over the stage's epochs (25), trains the weights alone for its first 10
(``stage_warmup=0.4``), and clips the architecture gradient at norm 5 (§3.3; the same clip as the
weights). Search regularisation (§3.3): dropout on every identity skip connection (never the
stride-2 one, a FactorizedReduce), at the stage's initial rate (0.1, 0.4, 0.7 on CIFAR-10, the
official README), decaying as the official code: linearly over the warm-up epochs, rate * (E - e
- 1) / E at epoch e of E, then exponentially, rate * exp(-0.2 (e - warm-up)); the derived normal
cell keeps at most two skip connections (the weakest replaced by their edge's next best op).
Architecture Adam lr 6e-4, betas (0.5, 0.999), weight decay 1e-3; batch 96.
"""
from __future__ import annotations

import math

import torch

from ..core.options import MAX_DEPTH
from ..core.strategy import Estimator, Stage, Strategy, cosine
from ..errors import ArchgradError
from . import adam_update, common, register


class ProgressiveStrategy(Strategy):
    def __init__(self, *args, stage_depths=None, keep=None, skip_dropout=(0.1, 0.4, 0.7),
                 stage_warmup=0.4, dropout_decay=0.2, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_depths, self.keep = stage_depths, keep
        self.skip_dropout, self.stage_warmup = tuple(skip_dropout), stage_warmup
        self.dropout_decay = dropout_decay

    @property
    def min_epochs(self) -> int:
        return len(self.skip_dropout)

    def plan(self, epochs, space_cls=None, space_options=None):
        n = len(self.skip_dropout)
        if epochs < n:
            raise ArchgradError(f"pdarts runs {n} stages and needs at least {n} epochs, got "
                                f"{epochs}")
        depths = self.stage_depths
        option = getattr(space_cls, "depth_option", None)
        given = (space_options or {}).get(option) if option else None
        if depths is None and space_cls is not None:
            depths = space_cls.progressive_depths
            if given is not None and depths:
                # a depth given for the space is the first stage's, the later stages add the
                # space's increments (official train_search.py: --layers 5, --add_layers 6 12)
                depths = tuple(given + d - depths[0] for d in depths)
        elif depths is not None and given is not None and given != depths[0]:
            raise ArchgradError(f"pdarts: {option}={given} and stage_depths={list(depths)} "
                                f"disagree on the first stage's depth; give one of them")
        if depths and option and max(depths) > MAX_DEPTH:
            raise ArchgradError(f"pdarts: the last stage would have {option}={max(depths)}, over "
                                f"the {MAX_DEPTH} accepted; give a smaller first depth")
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
        # a fresh start for the architecture over the remaining candidates, and a new
        # architecture optimizer, as the official code builds a new network per stage
        gen = torch.Generator().manual_seed(self.seed + 1000 * index)
        for label, g in self.arch.groups.items():
            self.arch.theta[label].copy_(self.update.parameterization.init(g.shape, gen))
        self.update.bind(self.arch)
        self.attach(model)  # a new weight optimizer for the new supernet
        return {"n_pruned": pruned}

    def set_lr(self, epoch: int, epochs: int) -> float:
        """Cosine from ``lr`` to ``lr_min`` over each stage's own epochs (official: a new
        CosineAnnealingLR per stage)."""
        _, st = self.stage_of(epoch, epochs)
        self._lr = cosine(self.weights_cfg.lr, self.weights_cfg.lr_min, epoch - st.start,
                          st.end - st.start)
        for g in (self.weight_opt.param_groups if self.weight_opt else []):
            g["lr"] = self._lr
        return self._lr

    def dropout_rate(self, epoch: int, epochs: int) -> float:
        """The stage's skip-connection dropout at ``epoch`` (official train_search.py)."""
        i, st = self.stage_of(epoch, epochs)
        e, length = epoch - st.start, st.end - st.start
        rate = self.skip_dropout[i]
        if e < st.warmup:
            return rate * (length - e - 1) / length
        return rate * math.exp(-(e - st.warmup) * self.dropout_decay)

    def step(self, train_batch, valid_batch, *, epoch, epochs, **kw):
        self.estimator.skip_dropout = self.dropout_rate(epoch, epochs)
        return super().step(train_batch, valid_batch, epoch=epoch, epochs=epochs, **kw)

    def settings(self):
        out = super().settings()
        out.update({"stages": len(self.skip_dropout),
                    "stage_depths": self.stage_depths or "the space's (DARTS: 5, 11, 17 cells)",
                    "keep": self.keep or "5/8, then 3/8 of the candidates (8 -> 5 -> 3)",
                    "skip_dropout": self.skip_dropout, "stage_warmup": self.stage_warmup,
                    "dropout_decay": self.dropout_decay})
        return out


DEFAULTS = {"batch_size": 96, "epochs": 75, "lr_min": 0.0, "arch_lr": 6e-4,
            "arch_grad_clip": 5.0}
SOURCES = {"weights": "P-DARTS train_search.py (SGD 0.025 cosine to learning_rate_min 0 per "
           "stage, momentum 0.9, decay 3e-4, clip 5)",
           "arch": "P-DARTS train_search.py (Adam 6e-4, betas (0.5, 0.999), decay 1e-3, "
                   "architecture gradient clipped at grad_clip 5)",
           "schedule": "P-DARTS train_search.py (batch 96, 3 stages x 25 epochs, "
                       "eps_no_archs 10)",
           "stages": "P-DARTS §3.2", "stage_depths": "P-DARTS §3.2 / add_layers 6, 12",
           "keep": "P-DARTS train_search.py num_to_keep [5, 3, 1]",
           "skip_dropout": "P-DARTS README (dropout_rate 0.1, 0.4, 0.7 on CIFAR-10)",
           "stage_warmup": "P-DARTS train_search.py eps_no_archs 10 of 25",
           "dropout_decay": "P-DARTS train_search.py scale_factor 0.2",
           "max_skip": "P-DARTS §3.3 (at most 2 skip connections in the normal cell)",
           "*": "P-DARTS (Chen et al. 2019)"}


@register("pdarts", family="darts", adam=True, defaults=DEFAULTS, sources=SOURCES, help={
    "stage_depths": "supernet depth per stage (default: the space's)",
    "keep": "candidates per edge kept at stages 2, 3", "skip_dropout": "initial skip dropout "
    "per stage", "stage_warmup": "share of each stage training the weights only",
    "dropout_decay": "exponential decay of the skip dropout after the warm-up",
    "max_skip": "cap on skip connections in the derived normal cell"})
def pdarts(stage_depths=None, keep=None, skip_dropout=(0.1, 0.4, 0.7), stage_warmup: float = 0.4,
           dropout_decay: float = 0.2, max_skip: int = 2, **options) -> Strategy:
    """P-DARTS: progressive depth, candidate pruning between stages, skip-connection dropout and
    a cap on skip connections."""
    n = len(skip_dropout)  # one rate per stage: the number of stages
    if n < 1 or any(not 0.0 <= r < 1.0 for r in skip_dropout):
        raise ArchgradError(f"pdarts option skip_dropout takes one rate in [0, 1) per stage, "
                            f"got {list(skip_dropout)}")
    if stage_depths is not None and len(stage_depths) != n:
        raise ArchgradError(f"pdarts option stage_depths takes one depth per stage ({n}, as "
                            f"skip_dropout has them), got {list(stage_depths)}")
    if keep is not None and len(keep) != n - 1:
        raise ArchgradError(f"pdarts option keep takes the candidates kept at each stage after "
                            f"the first ({n - 1} numbers), got {list(keep)}")
    update = adam_update(options)
    opts = common(options)
    opts.setdefault("derive_options", {})["max_skip"] = max_skip
    return ProgressiveStrategy("pdarts", Estimator(), update, bilevel=True, arch_first=True,
                               stage_depths=stage_depths, keep=keep, skip_dropout=skip_dropout,
                               stage_warmup=stage_warmup, dropout_decay=dropout_decay, **opts)
