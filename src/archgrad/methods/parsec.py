"""PARSEC (Casale, Gordon & Fusi 2019): a categorical distribution over ops per edge, several
architecture samples per step, and the Monte-Carlo gradient of the log marginal likelihood,
grad log p(D) ~ sum_k w_k grad log p(a_k) with importance weights w_k proportional to the
likelihood of the validation batch under a_k, self-normalised. The batch's log-likelihood is
minus its summed loss, -B * L_val(a_k) (``likelihood="batch"``; ``"mean"`` uses -L_val, a tempered
likelihood). Each sample costs one forward pass (no backward)."""
from __future__ import annotations

import torch

from ..arch import Softmax
from ..errors import ArchgradError
from ..sampling import onehot, score_grads
from ..strategy import AdamUpdate, ArchStepResult, Strategy, accuracy
from . import common, register
from .reinforce import OneHotSampler


class Parsec(OneHotSampler):
    def __init__(self, samples: int = 8, likelihood: str = "batch"):
        super().__init__()
        if samples < 1:
            raise ArchgradError("PARSEC needs at least one sample per step")
        if likelihood not in ("batch", "mean"):
            raise ArchgradError(f"likelihood must be 'batch' or 'mean', got {likelihood!r}")
        self.samples, self.likelihood = samples, likelihood

    def arch_step(self, ctx):
        dev = ctx.batch[0].device
        draws, losses, accs = [], [], []
        with torch.no_grad():
            for _ in range(self.samples):
                idx = self.sample(ctx)
                out, loss = ctx.forward(onehot(idx, ctx.arch.groups, dev))
                draws.append(idx)
                losses.append(float(loss))
                accs.append(accuracy(out, ctx.batch[1]))
        scale = ctx.batch[0].shape[0] if self.likelihood == "batch" else 1
        w = torch.softmax(-scale * torch.tensor(losses, dtype=torch.float64), 0)
        grads = None
        for wk, idx in zip(w.tolist(), draws):
            coef = {k: torch.full((len(v),), -wk) for k, v in idx.items()}  # ascent on log p(D)
            g = score_grads(ctx.arch, idx, coef)
            grads = g if grads is None else {k: grads[k] + g[k] for k in g}
        acc = torch.stack(accs).mean() if accs[0] is not None else None
        return ArchStepResult(grads, {"arch_loss": sum(losses) / len(losses), "arch_acc": acc},
                              [(d, -loss) for d, loss in zip(draws, losses)])


@register("parsec", family="score-function")
def parsec(samples: int = 8, likelihood: str = "batch", arch_lr=3e-4, arch_betas=(0.5, 0.999),
           arch_weight_decay=1e-3, init_scale=1e-3, **options) -> Strategy:
    """PARSEC: several architecture samples per step, importance-weighted Monte-Carlo gradient."""
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, Softmax(init_scale))
    return Strategy("parsec", Parsec(samples, likelihood), update, bilevel=True, arch_first=False,
                    **common(options))
