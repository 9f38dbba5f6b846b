"""Datasets by name, held in memory, and a deterministic batch loader.

Images are kept as uint8 tensors; batches are augmented (pad-4 random crop, horizontal flip,
as the standard CIFAR recipe) and normalised per channel on the fly with a generator seeded per
epoch, so a run's batches depend only on (seed, epoch) and an interrupted run resumes exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ArchgradError
from ..registry import Registry
from . import readers, text


@dataclass(frozen=True)
class DatasetInfo:
    reader: Callable
    augment: bool  # random crop + flip when training
    description: str
    #: a quick search's budget on a small bundled dataset, overriding the strategy's paper
    #: settings (SNAS's 150 epochs, PC-DARTS's batch 256 would leave 2 steps per epoch)
    search_epochs: int | None = None
    search_batch_size: int | None = None
    #: "image" (N, C, H, W arrays) or "text" (a token corpus)
    modality: str = "image"
    #: padding of the random crop where augmented (CIFAR: 4; ImageNet16: 2, as NAS-Bench-201)
    pad: int = 4


DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register("digits", DatasetInfo(readers.read_digits, False,
                  "scikit-learn's bundled 8x8 handwritten digits (1797 images; no download)",
                  search_epochs=10, search_batch_size=64))
DATASETS.register("mnist", DatasetInfo(readers.read_mnist, False, "MNIST, idx files"))
DATASETS.register("fashion-mnist", DatasetInfo(readers.read_fashion_mnist, False,
                  "Fashion-MNIST, idx files (Debian: dataset-fashion-mnist)"))
DATASETS.register("cifar10", DatasetInfo(readers.read_cifar10, True,
                  "CIFAR-10, cifar-10-batches-py/"))
DATASETS.register("cifar100", DatasetInfo(readers.read_cifar100, True,
                  "CIFAR-100, cifar-100-python/"))
DATASETS.register("imagenet16-120", DatasetInfo(readers.read_imagenet16, True,
                  "ImageNet16-120, NAS-Bench-201's downsampled ImageNet (first 120 classes, "
                  "16x16), ImageNet16/", pad=2))
DATASETS.register("imagefolder", DatasetInfo(readers.read_imagefolder, True,
                  "your own images: DIR/<class>/<images> (or DIR/train, DIR/test)"))
DATASETS.register("ptb", DatasetInfo(text.read_ptb, False,
                  "Penn Treebank, word level: ptb.{train,valid,test}.txt (or penn/*.txt)",
                  modality="text"))
DATASETS.register("synthetic-text", DatasetInfo(text.read_synthetic_text, False,
                  "a generated word corpus (41 words with <eos>, 3000/600/600 tokens), for "
                  "tests", modality="text"))
DATASETS.register("synthetic", DatasetInfo(readers.read_synthetic, False,
                  "random class templates + noise, 3x8x8, for tests", search_epochs=2,
                  search_batch_size=64))


@dataclass
class ImageDataset:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    augment: bool
    #: the random crop's padding where augmented
    pad: int = 4
    mean: Tensor = field(init=False)
    std: Tensor = field(init=False)

    def __post_init__(self):
        x = self.x_train.float() / 255.0
        self.mean = x.mean(dim=(0, 2, 3))
        self.std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)

    def space_options(self) -> dict:
        """The options a space takes from this dataset."""
        return {"num_classes": self.num_classes, "in_channels": self.in_channels}

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def search_split(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The training data split in two halves: weights train on the first, the architecture
        on the second (DARTS's ``train_portion = 0.5``)."""
        n = len(self.y_train) // 2
        return ((self.x_train[:n], self.y_train[:n]), (self.x_train[n:], self.y_train[n:]))

    def describe(self) -> str:
        return (f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.in_channels}x{self.image_size}x{self.image_size}, "
                f"{self.num_classes} classes")


def load_dataset(name: str, data_dir: str | Path | None = None, subset: int | None = None,
                 **reader_options) -> ImageDataset:
    """Load a registered dataset. ``subset`` keeps at most that many examples of each split,
    taken after a fixed shuffle so every class stays represented."""
    info = DATASETS.get(name)
    if subset is not None and (not isinstance(subset, int) or subset < 2):
        raise ArchgradError(f"--subset must be an integer of at least 2, got {subset!r}")
    if info.modality == "text":
        return info.reader(Path(data_dir) if data_dir else None, subset=subset)
    xtr, ytr, xte, yte = info.reader(Path(data_dir) if data_dir else None, **reader_options)
    g = torch.Generator().manual_seed(0)
    ptr = torch.randperm(len(ytr), generator=g)
    pte = torch.randperm(len(yte), generator=g)
    if subset is not None:
        ptr, pte = ptr[:subset], pte[:subset]
    num_classes = int(max(int(ytr.max()), int(yte.max()) if len(yte) else 0)) + 1
    return ImageDataset(name, xtr[ptr], ytr[ptr], xte[pte], yte[pte], num_classes, info.augment,
                        info.pad)


#: a dataset at most this large is copied to an accelerator once and batched there (no
#: host-to-device copy per step); larger ones are copied batch by batch
RESIDENT_BYTES = 2 << 30


class BatchLoader:
    """Batches of (normalised float images, labels) from uint8 tensors held in memory.

    On an accelerator, a dataset of at most ``RESIDENT_BYTES`` is kept on the device and every
    epoch's indices and augmentation draws are made on the CPU (the same draws, in the same
    order, as batch by batch) and copied once per epoch: a step then makes no host-to-device
    copy and no host synchronisation."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, *, mean: Tensor, std: Tensor,
                 shuffle: bool = False, augment: bool = False, drop_last: bool = False,
                 device: torch.device | str = "cpu", pad: int = 4, seed: int = 0,
                 cutout: int = 0, shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ArchgradError(f"batch size must be a positive integer, got {batch_size}")
        if len(y) == 0:
            raise ArchgradError("a data split is empty; use a larger --subset")
        self.device = torch.device(device)
        self.resident = self.device.type != "cpu" and \
            x.numel() * x.element_size() + y.numel() * y.element_size() <= RESIDENT_BYTES
        if self.resident:
            x, y = x.to(self.device), y.to(self.device)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.pad, self.seed, self.cutout = pad, seed, cutout
        # (rank, world): every rank walks the same permutation and takes its slice of each
        # batch (a data-parallel run's shard; the batch size is that of all ranks together)
        self.rank, self.world = shard
        self.mean = mean.view(1, -1, 1, 1).to(self.device)
        self.std = std.view(1, -1, 1, 1).to(self.device)

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last and n >= self.batch_size \
            else math.ceil(n / self.batch_size)

    def _plan(self, epoch: int) -> Iterator[tuple[Tensor, tuple | None, Tensor | None]]:
        """Per batch, on the CPU: the example indices, the crop offsets and flips, the cutout
        mask (each drawn from the epoch's generator in this order)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        _, _, h, w = self.x.shape
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            crop = crop_flip_draws(len(idx), self.pad, g) if self.augment else None
            mask = cutout_mask((len(idx), 1, h, w), self.cutout, g) if self.cutout else None
            yield idx, crop, mask

    def epoch(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        plan = self._plan(epoch)
        if self.resident:  # the epoch's draws in one copy, then sliced per batch
            plan = _on_device(list(plan), self.device)
        for idx, crop, mask in plan:
            x, y = self.x[idx], self.y[idx]
            if crop is not None:
                x = apply_crop_flip(x, self.pad, *crop)
            if self.world > 1:  # the random draws above cover the whole batch on every rank
                per = len(idx) // self.world
                part = slice(self.rank * per, (self.rank + 1) * per)
                x, y = x[part], y[part]
                mask = mask[part] if mask is not None else None
            x = x.to(self.device, non_blocking=True).float().div_(255.0)
            x = (x - self.mean) / self.std
            if mask is not None:
                x = x * mask.to(x.device, non_blocking=True)
            yield x, y.to(self.device, non_blocking=True)

    def __iter__(self):
        return self.epoch(0)


def _on_device(plan: list, device: torch.device) -> list:
    """A list of per-batch (idx, crop, mask) with every tensor on ``device``, copied in one
    transfer per kind."""
    if not plan:
        return plan
    sizes = [len(p[0]) for p in plan]

    def move(parts):
        return list(torch.cat(parts).to(device, non_blocking=True).split(sizes))
    idx = move([p[0] for p in plan])
    crops = [None] * len(plan)
    if plan[0][1] is not None:
        cols = [move([p[1][i] for p in plan]) for i in range(3)]
        crops = list(zip(*cols))
    masks = move([p[2] for p in plan]) if plan[0][2] is not None else [None] * len(plan)
    return list(zip(idx, crops, masks))


def cutout_mask(shape, length: int, g: torch.Generator) -> Tensor:
    """Cutout (DeVries & Taylor 2017) as the DARTS code applies it after normalisation: per image
    one length x length square, centred uniformly on the image and clipped at its borders, set
    to zero."""
    n, _, h, w = shape
    cy = torch.randint(0, h, (n,), generator=g)
    cx = torch.randint(0, w, (n,), generator=g)
    rows, cols = torch.arange(h), torch.arange(w)
    inside_y = ((rows[None] >= (cy[:, None] - length // 2).clamp(0, h))
                & (rows[None] < (cy[:, None] + length // 2).clamp(0, h)))
    inside_x = ((cols[None] >= (cx[:, None] - length // 2).clamp(0, w))
                & (cols[None] < (cx[:, None] + length // 2).clamp(0, w)))
    hole = inside_y[:, :, None] & inside_x[:, None, :]
    return (~hole).float()[:, None]


def crop_flip_draws(n: int, pad: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The random draws of ``random_crop_flip`` for ``n`` images: row and column offsets into
    the padded image and which images are flipped."""
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    else:
        oy = ox = torch.zeros(n, dtype=torch.long)
    flip = torch.rand(n, generator=g) < 0.5
    return oy, ox, flip


def apply_crop_flip(x: Tensor, pad: int, oy: Tensor, ox: Tensor, flip: Tensor) -> Tensor:
    """Pad with zeros by ``pad``, crop at offsets (oy, ox) to the original size, flip where
    ``flip``; on the device of ``x`` (the draws are moved there)."""
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
        rows = (oy.to(dev)[:, None] + ar_h)[:, None, :, None]
        cols = (ox.to(dev)[:, None] + ar_w)[:, None, None, :]
        x = xp[torch.arange(n, device=dev)[:, None, None, None],
               torch.arange(c, device=dev)[None, :, None, None], rows, cols]
    return torch.where(flip.to(dev)[:, None, None, None], x.flip(-1), x)


def random_crop_flip(x: Tensor, pad: int, g: torch.Generator) -> Tensor:
    """Pad with zeros by ``pad``, take a random crop of the original size, flip half."""
    return apply_crop_flip(x, pad, *crop_flip_draws(len(x), pad, g))


__all__ = ["DATASETS", "DatasetInfo", "ImageDataset", "BatchLoader", "load_dataset",
           "random_crop_flip", "cutout_mask"]
