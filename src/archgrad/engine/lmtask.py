"""Language modelling as a search task: token streams, truncated back-propagation through time,
perplexity.

The task follows the recurrent space's recipe (``space.lm_settings()``):

* DARTS (``arch_stream="valid"``): the weights train on the training stream in windows of 35
  tokens (17 with probability 0.05, the learning rate scaled by the window's length / 35), the
  architecture steps on the validation stream batchified at the same size in windows of 35 at
  the training stream's position; the weights' loss adds the temporal activation regularisation
  beta * mean((h_t - h_{t-1})^2) (beta 1e-3), the architecture's is the plain log-likelihood
  (rnn/train_search.py, architect.py).
* AdvantageNAS (``arch_stream="train-alternate"``): fixed windows of 35 of the training stream,
  weight and theta steps on alternate windows (one shared hidden state), the loss summed over
  the window's time steps (ptb/custom.py).

The hidden state is carried from window to window of a stream and detached (truncated BPTT);
every pass over a stream starts from zeros. Evaluation: the validation stream at the eval batch
size (DARTS 10, AdvantageNAS 1), hidden state carried, perplexity exp(mean NLL per token).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..data.text import StateBox, Stream, TextCorpus, no_step, perplexity, seq_lengths
from .task import Task


def lm_loss(tar: float = 0.0, ar: float = 0.0, sum_over_time: bool = False
            ) -> Callable[[object, Tensor], Tensor]:
    """The loss of a window: NLL per token (times the window's length with ``sum_over_time``)
    plus the activation (``ar``) and temporal activation (``tar``) regularisers on the cell's
    hidden states (Merity et al.; DARTS's alpha and beta)."""

    def loss(out, y):
        lp = out.log_probs
        nll = torch.nn.functional.nll_loss(lp.reshape(-1, lp.size(-1)), y)
        out.nll = nll.detach()
        total = nll * lp.size(0) if sum_over_time else nll
        h = out.hidden
        if tar and h.size(0) > 1:
            total = total + tar * (h[1:] - h[:-1]).pow(2).mean()
        if ar:
            total = total + ar * h.pow(2).mean()
        return total

    return loss


class LMTask(Task):
    """Word-level language modelling on a corpus for the search loop."""

    record_derived = False

    def __init__(self, corpus: TextCorpus, batch_size: int, seed: int, device, *, bptt=35,
                 variable_length=True, arch_stream="valid", tar=0.0, ar=0.0,
                 eval_batch_size=10, loss_sum_over_time=False, shard=(0, 1)):
        self.corpus, self.seed, self.device = corpus, seed, torch.device(device)
        self.bptt, self.variable = bptt, variable_length
        self.arch_stream = arch_stream
        self.train = Stream(corpus.train, batch_size, device, bptt, shard)
        self.search = Stream(corpus.valid, batch_size, device, bptt, shard) \
            if arch_stream == "valid" else None
        self.valid = Stream(corpus.valid, eval_batch_size, device, bptt)
        self.eval_batch_size = eval_batch_size
        self.loss_fn = lm_loss(tar, ar, loss_sum_over_time)
        self.arch_loss_fn = lm_loss(0.0, 0.0, loss_sum_over_time)
        self.steps_per_epoch = len(self._windows(0)) // (2 if arch_stream == "train-alternate"
                                                         else 1)
        if self.steps_per_epoch < 1:
            raise no_step(self.train, len(corpus.train), batch_size,
                          "two windows (weights, then θ)" if arch_stream == "train-alternate"
                          else "a window")
        self.eval_split = f"valid (batch {eval_batch_size})"
        self.eval_batches = (f"a batch: a window of {bptt} tokens in {eval_batch_size} stream"
                             + ("s" if eval_batch_size != 1 else ""))

    def _windows(self, epoch: int) -> list[int]:
        return seq_lengths(self.train.length, self.bptt,
                           (self.seed * 1_000_003 + epoch) * 7 + 3, self.variable)

    def batches(self, epoch: int) -> Iterator[tuple]:
        """(weights' window, architecture's window) per iteration."""
        lens = self._windows(epoch)
        box = StateBox()
        if self.arch_stream == "train-alternate":
            # one stream, one state: weights on windows 1, 3, ..., theta on 2, 4, ...
            pos = list(itertools.accumulate([0] + lens))
            it = iter(range(len(lens)))
            for k in it:
                k2 = next(it, None)
                if k2 is None:
                    return
                w = self.train.window(pos[k], lens[k], box)
                a = self.train.window(pos[k2], lens[k2], box)
                yield w, a
            return
        vbox = StateBox()
        i = 0
        for n in lens:
            w = self.train.window(i, n, box, lr_scale=n / self.bptt)
            a = self.search.window(i % (self.search.length - 1), self.bptt, vbox) \
                if self.search is not None else None
            yield w, a
            i += n

    def weight_batches(self, epoch):
        return (w for w, _ in self.batches(epoch))

    def arch_batches(self, epoch):
        return (a for _, a in self.batches(epoch))

    @torch.no_grad()
    def evaluate(self, model, mix, limit: int | None = None, bn: str = "running"
                 ) -> dict[str, float]:
        """Validation NLL per token and perplexity, the hidden state carried over the stream."""
        import contextlib

        from ..core.bn import batch_statistics
        was = model.training
        model.eval()
        box = StateBox()
        total, count = 0.0, 0
        ctx = batch_statistics(model) if bn == "batch" else contextlib.nullcontext()
        with ctx:
            for i in range(0, self.valid.length - 1, self.bptt):
                if limit is not None and count >= limit:
                    break
                x, y = self.valid.window(i, self.bptt, box)
                out = model(x, mix() if callable(mix) else mix)
                lp = out.log_probs
                nll = torch.nn.functional.nll_loss(lp.reshape(-1, lp.size(-1)), y,
                                                   reduction="sum")
                total += float(nll)
                count += y.numel()
        model.train(was)
        loss = total / max(count, 1)
        return {"loss": loss, "ppl": perplexity(loss)}

    def summarize(self, record: dict) -> None:
        """Perplexities from the epoch's mean log-likelihoods."""
        for k in ("train", "arch"):
            if f"{k}_nll" in record:
                record[f"{k}_ppl"] = perplexity(record[f"{k}_nll"])

    def describe(self):
        return self.corpus.describe()


def lm_metrics(out) -> dict:
    nll = getattr(out, "nll", None)
    return {"nll": nll} if nll is not None else {}


__all__ = ["LMTask", "lm_loss", "lm_metrics"]
