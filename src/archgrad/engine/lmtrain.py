"""Training a language model of a recurrent genotype from scratch (``archgrad train`` on a text
corpus), with the space's recipe.

DARTS (rnn/train.py): SGD lr 20 (constant), weight decay 8e-7, clip 0.25, batch 64, windows of
35 tokens (17.5 with probability 0.05, then a normal draw of sd 5 around it, at least 5 and at
most 55) with the learning rate scaled by length / 35, temporal activation regularisation 1e-3;
after every epoch the validation loss at batch 10; once it is above the best of all but the last
``nonmono`` (5) epochs, the optimizer switches to averaged SGD (ASGD, t0 = 0, lambda = 0) and the
validation uses the averaged weights. The best validation epoch's weights are kept and tested
at batch 1.

AdvantageNAS (ptb/custom.py): SGD lr 20 cosine-annealed, clip 0.25, batch 256, fixed windows of
35, the loss summed over the window's time steps; validation and test at batch 1.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from ..data.text import StateBox, Stream, TextCorpus, no_step, perplexity, seq_lengths
from .lmtask import lm_loss


@contextlib.contextmanager
def averaged_weights(model: nn.Module, opt: torch.optim.Optimizer | None):
    """The model with ASGD's averaged weights in place of its own, for the duration (DARTS's
    evaluation once averaging has started); a no-op for other optimizers."""
    if not isinstance(opt, torch.optim.ASGD):
        yield
        return
    saved = []
    with torch.no_grad():
        for p in model.parameters():
            ax = opt.state.get(p, {}).get("ax")
            if ax is not None:
                saved.append((p, p.detach().clone()))
                p.copy_(ax)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in saved:
                p.copy_(v)


@torch.no_grad()
def evaluate_stream(model: nn.Module, stream: Stream, bptt: int) -> dict[str, float]:
    """NLL per token and perplexity over a whole stream, the hidden state carried."""
    was = model.training
    model.eval()
    box = StateBox()
    total, count = 0.0, 0
    for i in range(0, stream.length - 1, bptt):
        x, y = stream.window(i, bptt, box)
        lp = model(x).log_probs
        total += float(torch.nn.functional.nll_loss(lp.reshape(-1, lp.size(-1)), y,
                                                    reduction="sum"))
        count += y.numel()
    model.train(was)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": perplexity(loss)}


class LMTrainer:
    """Epochs of truncated BPTT over the training stream, validation after each, the ASGD
    switch and the best weights; the state (``state_dict``) goes into the checkpoint."""

    def __init__(self, corpus: TextCorpus, recipe: dict, seed: int, device, shard=(0, 1)):
        self.recipe, self.seed = recipe, seed
        self.bptt = int(recipe["bptt"])
        bs = int(recipe["batch_size"])
        self.eval_bs, self.test_bs = int(recipe["eval_batch_size"]), \
            int(recipe["test_batch_size"])
        self.train = Stream(corpus.train, bs, device, self.bptt, shard)
        self.dist = None  # a data-parallel run's context: gradients averaged over the ranks
        self.valid = Stream(corpus.valid, self.eval_bs, device, self.bptt)
        self.test = Stream(corpus.test, self.test_bs, device, self.bptt)
        self.variable = bool(recipe["variable_length"])
        self.loss_fn = lm_loss(float(recipe["tar"]), float(recipe["ar"]),
                               bool(recipe["loss_sum_over_time"]))
        self.steps_per_epoch = len(self._lengths(0))
        if self.steps_per_epoch < 1:
            raise no_step(self.train, len(corpus.train), bs, "a window")
        # state carried across epochs (and checkpoints)
        self.val_history: list[float] = []
        self.asgd_epoch: int | None = None
        self.best: dict[str, Any] | None = None  # epoch, loss, weights (CPU)

    def _lengths(self, epoch: int) -> list[int]:
        return seq_lengths(self.train.length, self.bptt, (self.seed * 1_000_003 + epoch) * 11
                           + 5, self.variable, jitter=5.0 if self.variable else 0.0)

    def meta_input(self, batch: int):
        from ..data.text import Window
        return Window(torch.empty(self.bptt, batch, dtype=torch.long, device="meta"), None,
                      StateBox())

    def optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        r = self.recipe
        if self.asgd_epoch is not None:  # DARTS: t0 = 0, lambd = 0
            return torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0,
                                    weight_decay=r["weight_decay"])
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=r["momentum"],
                               weight_decay=r["weight_decay"],
                               nesterov=bool(r["nesterov"]) and r["momentum"] > 0)

    def train_epoch(self, model, opt, epoch: int, lr: float, bar=None):
        """One pass over the training stream; (record, index of the first bad step or -1)."""
        model.train()
        box = StateBox()
        clip = self.recipe.get("grad_clip") or float("inf")
        dev = self.train.data.device
        nll_sum = torch.zeros((), dtype=torch.float64, device=dev)
        first_bad = torch.full((), -1, dtype=torch.long, device=dev)
        tokens, i = 0, 0
        for step, n in enumerate(self._lengths(epoch)):
            x, y = self.train.window(i, n, box)
            i += n
            for g in opt.param_groups:  # DARTS: a shorter window, a smaller step
                g["lr"] = lr * len(x) / self.bptt if self.variable else lr
            out = model(x)
            loss = self.loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.dist is not None:
                self.dist.average_([p.grad for p in model.parameters() if p.grad is not None])
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
            bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(norm))
            first_bad = torch.where(bad & (first_bad < 0), torch.full_like(first_bad, step),
                                    first_bad)
            opt.step()
            nll_sum += out.nll.double() * y.numel()
            tokens += y.numel()
            if bar is not None:
                bar.update(1)
        for g in opt.param_groups:
            g["lr"] = lr
        nll = float(nll_sum) / max(tokens, 1)
        return {"train_loss": nll, "train_ppl": perplexity(nll)}, int(first_bad)

    def end_epoch(self, model, opt, epoch: int, lr: float, rec: dict):
        """Validation (with the averaged weights under ASGD), the best weights, DARTS's switch
        to ASGD; returns the optimizer for the next epoch."""
        with averaged_weights(model, opt):
            ev = evaluate_stream(model, self.valid, self.bptt)
            if self.best is None or ev["loss"] < self.best["loss"]:
                self.best = {"epoch": epoch + 1, "loss": ev["loss"],
                             "weights": {k: v.detach().to("cpu", copy=True)
                                         for k, v in model.state_dict().items()}}
        rec.update(valid_loss=ev["loss"], valid_ppl=ev["ppl"])
        r = self.recipe
        if self.asgd_epoch is None:
            k = int(r["nonmono"])
            if r["asgd"] and len(self.val_history) > k and \
                    ev["loss"] > min(self.val_history[:-k]):
                self.asgd_epoch = epoch + 1
                rec["switched_to_asgd"] = True
                opt = self.optimizer(model, lr)
            self.val_history.append(ev["loss"])
        if self.asgd_epoch is not None:
            rec["asgd"] = True
        return opt

    def final(self, model) -> dict[str, Any]:
        """Validation and test perplexity of the best validation epoch's weights."""
        if self.best is not None:
            model.load_state_dict(self.best["weights"])
        v = evaluate_stream(model, self.valid, self.bptt)
        t = evaluate_stream(model, self.test, self.bptt)
        out = {"valid_loss": v["loss"], "valid_ppl": v["ppl"], "test_loss": t["loss"],
               "test_ppl": t["ppl"], "eval_batch_size": self.eval_bs,
               "test_batch_size": self.test_bs,
               "selected": f"the best validation epoch ({self.best['epoch']})"
               if self.best is not None else "the last epoch"}
        if self.asgd_epoch is not None:
            out["asgd_from_epoch"] = self.asgd_epoch
        return out

    def example(self, model):
        return step_example(model)

    def state_dict(self) -> dict:
        return {"val_history": list(self.val_history), "asgd_epoch": self.asgd_epoch,
                "best": copy.copy(self.best)}

    def load_state_dict(self, state: dict) -> None:
        self.val_history = [float(v) for v in state["val_history"]]
        self.asgd_epoch = state["asgd_epoch"]
        self.best = state["best"]


def step_example(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step of two sequences and the model's zero state, on the model's device: what
    ``export_program`` traces a language model with."""
    like = next(model.parameters()).detach().float()
    return torch.zeros(1, 2, dtype=torch.long, device=like.device), model.init_state(2, like)


__all__ = ["LMTrainer", "averaged_weights", "evaluate_stream", "step_example"]
