"""A search's data and loss: batches for the weights and the architecture, and evaluation.

Image spaces get an :class:`ImageTask` built from a registered dataset (training data split in
two halves); a space that generates its own data (the toy teacher-student task) provides its own
task through ``SearchSpace.task``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from .arch import Mix
from .data import BatchLoader, ImageDataset

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

    def evaluate(self, model: nn.Module, mix: Mix) -> dict[str, float]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class ImageTask(Task):
    """Classification on an image dataset: weights on the first half of the training data, the
    architecture on the second (DARTS), evaluation on the second half."""

    def __init__(self, data: ImageDataset, batch_size: int, seed: int, device, loss_fn):
        (xtr, ytr), (xva, yva) = data.search_split()
        kw = dict(mean=data.mean, std=data.std, device=device)
        self.data = data
        self.loss_fn = loss_fn
        self.train = BatchLoader(xtr, ytr, batch_size, shuffle=True, augment=data.augment,
                                 drop_last=True, seed=seed, **kw)
        self.arch = BatchLoader(xva, yva, batch_size, shuffle=True, augment=data.augment,
                                drop_last=True, seed=seed + 1, **kw)
        self.eval_loader = BatchLoader(xva, yva, max(batch_size, 256), **kw)
        self.steps_per_epoch = min(len(self.train), len(self.arch))

    def weight_batches(self, epoch):
        return self.train.epoch(epoch)

    def arch_batches(self, epoch):
        return self.arch.epoch(epoch)

    @torch.no_grad()
    def evaluate(self, model, mix, limit: int | None = None) -> dict[str, float]:
        """Loss and accuracy (%) under ``mix`` in eval mode (at most ``limit`` examples)."""
        was = model.training
        model.eval()
        n, loss_sum, correct = 0, 0.0, 0.0
        for x, y in self.eval_loader.epoch(0):
            if limit is not None and n >= limit:
                break
            out = model(x, mix)
            loss_sum += float(self.loss_fn(out, y)) * len(y)
            correct += float((out.argmax(-1) == y).sum())
            n += len(y)
        model.train(was)
        return {"loss": loss_sum / max(n, 1), "acc": 100.0 * correct / max(n, 1)}

    def describe(self):
        return self.data.describe()
