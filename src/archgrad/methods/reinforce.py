"""REINFORCE with an independent categorical distribution per edge (the ENAS-style baseline of
AdvantageNAS's comparison, eq. 4): sample a ~ p, reward r = -L_val(a) from a forward pass only,
gradient (r - b) grad log p(a) with b a moving average of the reward. Eq. 4 has no baseline; the
moving average (coefficient 0.05) is the comparison code's (toy/toy.py, cifar10/search.py,
util.EMA). That code folds the current loss into the average before subtracting it (a factor
0.95 on the advantage, which Adam does not see) and, on NAS-Bench-201, also the weight steps'
training losses; here the average is of the architecture steps' rewards."""
from __future__ import annotations

import torch

from ..core.sampling import onehot, sample_indices, score_grads
from ..core.strategy import ArchStepResult, Estimator, StepContext, Strategy, accuracy
from . import adam_update, common, register


class OneHotSampler(Estimator):
    """Base for estimators that sample one candidate per edge from p and compute only it."""

    dense = False
    joint_ok = False
    eval_mode = "one architecture sampled from p per validation batch"
    eval_bn = "batch"

    def sample(self, ctx: StepContext) -> dict[str, list[int]]:
        return sample_indices(ctx.arch.probs_detached(), ctx.generator)

    def weight_mix(self, ctx):
        dev = ctx.batch[0].device
        return onehot(self.sample(ctx), ctx.arch.groups, dev)

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        gen = generator or torch.Generator().manual_seed(0)
        dev = next(iter(arch.theta.values())).device
        return lambda: onehot(sample_indices(arch.probs_detached(), gen), arch.groups, dev)


class Reinforce(OneHotSampler):
    def __init__(self, baseline: bool = True, baseline_coef: float = 0.05):
        super().__init__()
        self.use_baseline, self.baseline_coef = baseline, baseline_coef
        self.register_buffer("baseline", torch.zeros((), dtype=torch.float64))
        self.register_buffer("baseline_set", torch.zeros((), dtype=torch.bool))

    def advantage(self, reward: float) -> float:
        """r - b with the moving average b of earlier rewards; then b absorbs r."""
        if not self.use_baseline:
            return reward
        if not bool(self.baseline_set):
            self.baseline.fill_(reward)
            self.baseline_set.fill_(True)
        adv = reward - float(self.baseline)
        self.baseline.mul_(1 - self.baseline_coef).add_(self.baseline_coef * reward)
        return adv

    def arch_step(self, ctx):
        idx = self.sample(ctx)
        with torch.no_grad():  # REINFORCE needs no backward pass
            out, loss = ctx.forward(onehot(idx, ctx.arch.groups, ctx.batch[0].device))
        reward = -float(loss)
        adv = self.advantage(reward)
        # descent direction of -J: -(r - b) grad log p(a)
        coef = {k: torch.full((len(v),), -adv) for k, v in idx.items()}
        grads = score_grads(ctx.arch, idx, coef)
        return ArchStepResult(grads, {"arch_loss": loss, "arch_acc": accuracy(out, ctx.batch[1]),
                                      "baseline": float(self.baseline)}, [(idx, reward)])


    def settings(self):
        return {"baseline": self.use_baseline, "baseline_coef": self.baseline_coef}


SOURCES = {"weights": "DARTS's (AdvantageNAS §5 runs every method with the same weight training)",
           "arch": "DARTS's Adam (AdvantageNAS §5)",
           "schedule": "DARTS's bi-level schedule",
           "baseline": "AdvantageNAS's comparison code (toy/toy.py, cifar10/search.py: reward "
                       "loss - moving average; eq. 4 itself has no baseline)",
           "baseline_coef": "AdvantageNAS official util.py EMA(coef=0.05)",
           "*": "REINFORCE (Williams 1992) as AdvantageNAS's and ENAS's baseline"}


@register("reinforce", family="score-function", adam=True, sources=SOURCES,
          help={"baseline": "subtract a moving-average baseline from the reward",
                "baseline_coef": "the baseline's moving-average coefficient"})
def reinforce(baseline: bool = True, baseline_coef: float = 0.05, **options) -> Strategy:
    """REINFORCE/ENAS-style policy gradient, independent categorical per edge, moving-average
    baseline."""
    return Strategy("reinforce", Reinforce(baseline, baseline_coef), adam_update(options),
                    bilevel=True, arch_first=False, **common(options))
