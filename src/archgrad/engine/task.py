"""A search's data and loss: batches for the weights and the architecture, and evaluation.

Image spaces get an :class:`ImageTask` built from a registered dataset (training data split in
two halves); a space that generates its own data (the toy teacher-student task) provides its own
task through ``SearchSpace.task``.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from ..core.arch import Mix
from ..data import BatchLoader, ImageDataset

Batch = tuple[Tensor, Tensor]


class Task:
    """Interface: batches per epoch for the two steps, a loss, and evaluation of a mix."""

    steps_per_epoch: int
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    #: cheap enough to evaluate the derived architecture every epoch
    record_derived: bool = False

    def weight_batches(self, epoch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def arch_batches(self, epoch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, mix: Mix | Callable[[], Mix]) -> dict[str, float]:
        raise NotImplementedError

    def batches(self, epoch: int) -> Iterator[tuple[Batch, Batch | None]]:
        """(weights' batch, architecture's batch) per iteration of an epoch."""
        return zip(self.weight_batches(epoch), self.arch_batches(epoch))

    def validation_batches(self, seed: int):
        """A loader of the validation split at the search's batch size, shuffled, without
        augmentation (NAS-Bench-201's one-batch selection); None where a task has none."""
        return None

    def summarize(self, record: dict) -> None:
        """Derived figures of an epoch's record (a language model's perplexities)."""

    def describe(self) -> str:
        return type(self).__name__


class ImageTask(Task):
    """Classification on an image dataset. ``split="halves"``: weights on the first half of the
    training data, the architecture on the second (DARTS), evaluation on the second.
    ``split="all"`` (single-level methods): every training example trains, there are no
    architecture batches of their own, and evaluation is on the test split, the only held-out
    data left. ``split="all-resampled"``: as "all", the architecture stepping on batches of a
    second shuffled pass over the same data."""

    def __init__(self, data: ImageDataset, batch_size: int, seed: int, device, loss_fn,
                 split: str = "halves", shard: tuple[int, int] = (0, 1)):
        kw = dict(mean=data.mean, std=data.std, device=device, pad=getattr(data, "pad", 4))
        skw = dict(kw, shard=shard)  # the training batches: this rank's shard
        self.data, self.split = data, split
        self.loss_fn = loss_fn
        if split in ("all", "all-resampled"):
            xtr, ytr = data.x_train, data.y_train
            self.train = BatchLoader(xtr, ytr, batch_size, shuffle=True, augment=data.augment,
                                     drop_last=True, seed=seed, **skw)
            # all-resampled: the architecture's batches from a second shuffled pass over the
            # same data (the GAEA release's single-level search)
            self.arch = None if split == "all" else BatchLoader(
                xtr, ytr, batch_size, shuffle=True, augment=data.augment, drop_last=True,
                seed=seed + 1, **skw)
            if len(data.y_test):
                xev, yev, self.eval_split = data.x_test, data.y_test, "test"
            else:
                (_, _), (xev, yev) = data.search_split()
                self.eval_split = "training data, second half (no test split)"
            self.steps_per_epoch = len(self.train)
        else:
            (xtr, ytr), (xev, yev) = data.search_split()
            self.train = BatchLoader(xtr, ytr, batch_size, shuffle=True, augment=data.augment,
                                     drop_last=True, seed=seed, **skw)
            self.arch = BatchLoader(xev, yev, batch_size, shuffle=True, augment=data.augment,
                                    drop_last=True, seed=seed + 1, **skw)
            self.eval_split = "training data, second half (the architecture's)"
            self.steps_per_epoch = min(len(self.train), len(self.arch))
        self.eval_loader = BatchLoader(xev, yev, max(batch_size, 256), **kw)
        self._valid, self._valid_kw = (xev, yev), kw
        #: a sampling strategy's supernet is evaluated one sampled network per this many
        #: examples, the training batch size: as it trains (and its batch statistics), and
        #: over many networks rather than one per evaluation batch (3 on digits)
        self.sample_batch = batch_size
        self.eval_batches = f"a batch: {batch_size} examples, the training batch size"

    def validation_batches(self, seed):
        return BatchLoader(self._valid[0], self._valid[1], self.sample_batch, shuffle=True,
                           seed=seed, **self._valid_kw)

    def weight_batches(self, epoch):
        return self.train.epoch(epoch)

    def arch_batches(self, epoch):
        if self.arch is None:  # single level: the architecture steps on the weights' batch
            return itertools.repeat(None)
        return self.arch.epoch(epoch)

    @torch.no_grad()
    def evaluate(self, model, mix, limit: int | None = None,
                 bn: str = "running") -> dict[str, float]:
        """Loss and accuracy (%) under ``mix`` in eval mode (at most ``limit`` examples).
        ``mix`` may be a function that draws a mix (a sampling strategy's network) per
        ``sample_batch`` examples; ``bn="batch"``: batch norm with each batch's statistics, as
        in training."""
        from ..core.bn import batch_statistics
        was = model.training
        model.eval()
        n, loss_sum, correct = 0, 0.0, 0.0  # sums stay tensors: one read at the end
        ctx = batch_statistics(model) if bn == "batch" else contextlib.nullcontext()
        with ctx:
            for xb, yb in self.eval_loader.epoch(0):
                if limit is not None and n >= limit:
                    break
                step = self.sample_batch if callable(mix) else len(yb)
                for i in range(0, len(yb), step):
                    x, y = xb[i:i + step], yb[i:i + step]
                    out = model(x, mix() if callable(mix) else mix)
                    loss_sum = loss_sum + self.loss_fn(out, y).detach().float() * len(y)
                    correct = correct + (out.argmax(-1) == y).sum()
                    n += len(y)
        model.train(was)
        return {"loss": float(loss_sum) / max(n, 1), "acc": 100.0 * float(correct) / max(n, 1)}

    def describe(self):
        return self.data.describe()
