"""PARSEC (Casale, Gordon & Fusi 2019): a categorical distribution over ops per edge, several
architecture samples per step, and the Monte-Carlo gradient of the log marginal likelihood,
grad log p(D) ~ sum_k w_k grad log p(a_k) with importance weights w_k proportional to the
likelihood of the validation batch under a_k, self-normalised. The batch's log-likelihood is
minus its summed loss, -B * L_val(a_k) (``likelihood="batch"``; ``"mean"`` uses -L_val, a tempered
likelihood). Each sample costs one forward pass (no backward)."""
from __future__ import annotations

import torch

from ..errors import ArchgradError
from ..sampling import onehot, score_grads
from ..strategy import ArchStepResult, Strategy, accuracy
from . import adam_update, common, register
from .reinforce import OneHotSampler


class Parsec(OneHotSampler):
    def __init__(self, samples: int = 8, likelihood: str = "batch"):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
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


    def settings(self):
        return {"samples": self.samples, "likelihood": self.likelihood}


SOURCES = {"weights": "DARTS's (AdvantageNAS §5)", "arch": "DARTS's Adam (AdvantageNAS §5)",
           "schedule": "DARTS's bi-level schedule",
           "samples": "AdvantageNAS §5 / official util.py: 8 samples",
           "likelihood": "PARSEC (Casale et al. 2019) §3: the batch's log-likelihood",
           "*": "PARSEC (Casale et al. 2019)"}


@register("parsec", family="score-function", adam=True, sources=SOURCES,
          help={"samples": "architectures sampled per step",
                "likelihood": "'batch' (minus the summed loss) or 'mean' (tempered)"})
def parsec(samples: int = 8, likelihood: str = "batch", **options) -> Strategy:
    """PARSEC: several architecture samples per step, importance-weighted Monte-Carlo gradient."""
    return Strategy("parsec", Parsec(samples, likelihood), adam_update(options), bilevel=True,
                    arch_first=False, **common(options))
