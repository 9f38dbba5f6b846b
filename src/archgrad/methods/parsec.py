"""PARSEC (Casale, Gordon & Fusi 2019): a categorical distribution over ops per edge, several
architecture samples per step, and the Monte-Carlo gradient of the log marginal likelihood,
grad log p(D) ~ sum_k w_k grad log p(a_k) with importance weights w_k proportional to the
likelihood of the validation batch under a_k, self-normalised. The batch's log-likelihood is
minus its summed loss, -B * L_val(a_k) (``likelihood="batch"``; ``"mean"`` uses -L_val, a tempered
likelihood). Each sample costs one forward pass (no backward).

``form="advantagenas"`` is the PARSEC that AdvantageNAS compared against (its official
``util.py``, mode "PA", called from ``cifar10/search.py`` and ``ptb/custom.py``): one architecture
per architecture iteration, on that iteration's own batch, its reward the batch's mean loss; after
``samples`` (8) draws, w = softmax(losses) and the gradient sum_i w_i (onehot(a_i) - p) (p at the
update) is descended by the architecture optimizer, once per ``samples`` iterations."""
from __future__ import annotations

import torch

from ..core.sampling import onehot, score_grads
from ..core.strategy import ArchStepResult, Strategy, accuracy
from ..errors import ArchgradError
from . import adam_update, common, register
from .reinforce import OneHotSampler

FORMS = ("paper", "advantagenas")


class Parsec(OneHotSampler):
    def __init__(self, samples: int = 8, likelihood: str = "batch", form: str = "paper"):
        super().__init__()
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ArchgradError("PARSEC needs at least one sample per step")
        if likelihood not in ("batch", "mean"):
            raise ArchgradError(f"likelihood must be 'batch' or 'mean', got {likelihood!r}")
        if form not in FORMS:
            raise ArchgradError(f"PARSEC's form must be one of {', '.join(FORMS)}, got {form!r}")
        self.samples, self.likelihood, self.form = samples, likelihood, form
        #: the comparison form's draws since its last update: (indices, mean loss)
        self.pending: list[tuple[dict[str, list[int]], float]] = []

    def get_extra_state(self):
        return {"pending": [(dict(idx), loss) for idx, loss in self.pending]}

    def set_extra_state(self, state):
        self.pending = [({k: list(v) for k, v in idx.items()}, float(loss))
                        for idx, loss in state.get("pending", [])]

    def arch_step(self, ctx):
        if self.form == "advantagenas":
            return self._comparison_step(ctx)
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


    def _comparison_step(self, ctx):
        """One draw on this batch; every ``samples`` draws, the update (util.py mode "PA")."""
        idx = self.sample(ctx)
        with torch.no_grad():
            out, loss = ctx.forward(onehot(idx, ctx.arch.groups, ctx.batch[0].device))
        self.pending.append((idx, float(loss)))
        stats = {"arch_loss": loss.detach(), "arch_acc": accuracy(out, ctx.batch[1])}
        if len(self.pending) < self.samples:
            return ArchStepResult({}, stats, [(idx, -float(loss))])
        # the official weighting: softmax of the losses themselves (higher loss, more weight),
        # and the weighted sum of grad log p(a_i) = onehot(a_i) - p taken as the gradient to
        # descend, so theta moves away from the worse samples
        w = torch.softmax(torch.tensor([lo for _, lo in self.pending], dtype=torch.float64), 0)
        grads = None
        for wk, (draw, _) in zip(w.tolist(), self.pending):
            g = score_grads(ctx.arch, draw, {k: torch.full((len(v),), wk)
                                             for k, v in draw.items()})
            grads = g if grads is None else {k: grads[k] + g[k] for k in g}
        self.pending = []
        return ArchStepResult(grads, stats, [(idx, -float(loss))])

    def settings(self):
        return {"samples": self.samples, "likelihood": self.likelihood, "form": self.form}


SOURCES = {"weights": "DARTS's (AdvantageNAS §5)", "arch": "DARTS's Adam (AdvantageNAS §5)",
           "schedule": "DARTS's bi-level schedule",
           "samples": "AdvantageNAS §5 / official util.py: 8 samples",
           "likelihood": "PARSEC (Casale et al. 2019) §3: the batch's log-likelihood",
           "form": "'paper': PARSEC §3; 'advantagenas': AdvantageNAS's comparison code "
                   "(util.py mode PA: one draw per iteration, an update per 8 draws)",
           "*": "PARSEC (Casale et al. 2019)"}


@register("parsec", family="score-function", adam=True, sources=SOURCES,
          help={"samples": "architectures sampled per step ('advantagenas' form: draws per "
                           "update)",
                "likelihood": "'batch' (minus the summed loss) or 'mean' (tempered); the "
                              "paper form's",
                "form": "'paper' (PARSEC §3: every step, several samples on one batch) or "
                        "'advantagenas' (AdvantageNAS's comparison code: one draw per step, "
                        "an update per `samples` draws, weights softmax(+loss))"})
def parsec(samples: int = 8, likelihood: str = "batch", form: str = "paper",
           **options) -> Strategy:
    """PARSEC: several architecture samples per step, importance-weighted Monte-Carlo gradient."""
    return Strategy("parsec", Parsec(samples, likelihood, form), adam_update(options),
                    bilevel=True, arch_first=False, **common(options))
