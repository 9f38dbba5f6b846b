"""Readers for datasets in their standard published layouts. Nothing is downloaded.

Each reader returns ``(x_train, y_train, x_test, y_test)`` with images as uint8 tensors of shape
(N, C, H, W) and labels as int64 tensors, or raises :class:`DatasetNotFoundError` naming the path
it looked in and the layout it expects.
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import ArchgradError, DatasetNotFoundError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _t(x: np.ndarray) -> torch.Tensor:
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def _candidates(data_dir: Path | None, names: list[str], extra: list[Path] = ()) -> list[Path]:
    roots = [Path(data_dir).expanduser()] if data_dir is not None else []  # "~/data" too
    if data_dir is None:
        env = os.environ.get("ARCHGRAD_DATA")
        roots += [Path(env).expanduser()] if env else []
        roots += [Path("data")]
    out = []
    for r in roots:
        out += [r / n for n in names] + [r]
    return out + list(extra)


# -- scikit-learn digits ---------------------------------------------------------------------
def read_digits(data_dir=None) -> Arrays:
    """scikit-learn's bundled 8x8 digits (1797 images): a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(y))
    n_test = len(y) // 5
    te, tr = perm[:n_test], perm[n_test:]
    return _t(x[tr]), _t(y[tr]), _t(x[te]), _t(y[te])


# -- idx (MNIST, Fashion-MNIST) -----------------------------------------------------------------
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ArchgradError(f"{path} is not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(dirs: list[Path]) -> list[Path] | None:
    for d in dirs:
        found = []
        for name in IDX_FILES:
            for cand in (d / name, d / (name + ".gz")):
                if cand.is_file():
                    found.append(cand)
                    break
        if len(found) == 4:
            return found
    return None


def _read_idx_dataset(name: str, dirs: list[Path]) -> Arrays:
    files = _find_idx(dirs)
    if files is None:
        raise DatasetNotFoundError(
            f"{name} not found: looked for {', '.join(IDX_FILES)} (optionally .gz) in "
            f"{', '.join(str(d) for d in dirs)}; pass --data-dir DIR with those idx files")
    xtr, ytr, xte, yte = (_read_idx(f) for f in files)
    return (_t(xtr[:, None]), _t(ytr.astype(np.int64)), _t(xte[:, None]),
            _t(yte.astype(np.int64)))


def read_mnist(data_dir=None) -> Arrays:
    """MNIST in idx format (``train-images-idx3-ubyte[.gz]`` ...)."""
    return _read_idx_dataset("mnist", _candidates(data_dir, ["mnist", "MNIST/raw", "MNIST"]))


def read_fashion_mnist(data_dir=None) -> Arrays:
    """Fashion-MNIST in idx format; Debian's ``dataset-fashion-mnist`` package is found too."""
    return _read_idx_dataset(
        "fashion-mnist",
        _candidates(data_dir, ["fashion-mnist", "FashionMNIST/raw"],
                    [Path("/usr/share/datasets/fashion-mnist")]))


# -- CIFAR ---------------------------------------------------------------------------------------
#: what a published data batch (CIFAR-10/100, ImageNet16) may ask a pickle to build: numpy
#: arrays; dicts, lists, bytes, strings and numbers need no class at all
_PICKLE_CLASSES = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                   "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                   ("collections", "OrderedDict")}


def _latin1(text, encoding="latin1"):
    """``_codecs.encode`` as a protocol-2 pickle written by Python 3 rebuilds bytes with: only
    the latin-1 codec (another name could make the codec lookup import a module)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that builds only what the published batch files hold: a crafted file in a
    shared data directory cannot run code (anything else is refused by name)."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_CLASSES:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        raise pickle.UnpicklingError(f"{module}.{name}")


def _unpickle(path: Path, encoding: str = "bytes") -> dict:
    try:
        with open(path, "rb") as f:
            out = _DataUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise ArchgradError(f"{path}: refused: the file asks to build {e}; a data batch may "
                            f"hold only dicts, lists, bytes, strings, numbers and numpy "
                            f"arrays") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ArchgradError(f"{path}: not a readable data batch ({type(e).__name__}: "
                            f"{str(e)[:80]})") from None
    if not isinstance(out, dict):
        raise ArchgradError(f"{path}: a data batch is a dict of data and labels, this file "
                            f"holds a {type(out).__name__}")
    return out


def _field(batch: dict, key: str, path: Path):
    """``batch[key]`` whether the pickle's keys are bytes (CIFAR) or strings (ImageNet16)."""
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise ArchgradError(f"{path}: a data batch needs the key '{key}'; it has "
                        f"{', '.join(sorted(str(k) for k in batch))}")


def _cifar(name, dirname, train_files, test_files, label_key, data_dir) -> Arrays:
    dirs = [p if p.name == dirname else p / dirname for p in _candidates(data_dir, [])]
    dirs = list(dict.fromkeys(dirs))
    for d in dirs:
        if all((d / f).is_file() for f in train_files + test_files):
            def load(files):
                xs, ys = [], []
                for f in files:
                    b = _unpickle(d / f)
                    xs.append(_pixels(_field(b, "data", d / f), 32, d / f))
                    ys.append(np.asarray(_field(b, label_key.decode(), d / f), dtype=np.int64))
                return _t(np.concatenate(xs)), _t(np.concatenate(ys))
            return (*load(train_files), *load(test_files))
    raise DatasetNotFoundError(
        f"{name} not found: expected the python-pickle layout {dirname}/"
        f"{{{','.join(train_files + test_files)}}} in {', '.join(str(d.parent) for d in dirs)}; "
        f"pass --data-dir DIR containing {dirname}/")


def read_cifar10(data_dir=None) -> Arrays:
    """CIFAR-10, ``cifar-10-batches-py`` directory of pickled batches."""
    return _cifar("cifar10", "cifar-10-batches-py",
                  [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", data_dir)


def read_cifar100(data_dir=None) -> Arrays:
    """CIFAR-100 (fine labels), ``cifar-100-python`` directory."""
    return _cifar("cifar100", "cifar-100-python", ["train"], ["test"], b"fine_labels", data_dir)


def _pixels(data, size: int, path: Path) -> np.ndarray:
    a = np.asarray(data, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] != 3 * size * size:
        raise ArchgradError(f"{path}: 'data' must be rows of 3x{size}x{size} = {3 * size * size}"
                            f" bytes, got shape {tuple(a.shape)}")
    return a.reshape(-1, 3, size, size)


IMAGENET16_TRAIN = [f"train_data_batch_{i}" for i in range(1, 11)]


def read_imagenet16(data_dir=None, classes: int = 120) -> Arrays:
    """Downsampled ImageNet 16x16 (Chrabaszcz et al. 2017) as NAS-Bench-201 reads it
    (``DownsampledImageNet.py``): ``train_data_batch_1..10`` and ``val_data`` pickles of
    {'data': rows of 3x16x16 channel-first bytes, 'labels': 1-based classes}; only the first
    ``classes`` classes are kept (ImageNet16-120: labels 1..120, 151,700 train / 6,000 val
    images), labels shifted to start at 0. The benchmark's test split is the val file."""
    names = ["ImageNet16", "imagenet16", "ImageNet16-120", "imagenet16-120"]
    dirs = list(dict.fromkeys(_candidates(data_dir, names)))
    for d in dirs:
        if all((d / f).is_file() for f in IMAGENET16_TRAIN + ["val_data"]):
            def load(files):
                xs, ys = [], []
                for f in files:
                    b = _unpickle(d / f, encoding="latin1")
                    x = _pixels(_field(b, "data", d / f), 16, d / f)
                    y = np.asarray(_field(b, "labels", d / f), dtype=np.int64)
                    if len(y) != len(x):
                        raise ArchgradError(f"{d / f}: {len(x)} images but {len(y)} labels")
                    keep = (y >= 1) & (y <= classes)
                    xs.append(x[keep])
                    ys.append(y[keep] - 1)
                return _t(np.concatenate(xs)), _t(np.concatenate(ys))
            return (*load(IMAGENET16_TRAIN), *load(["val_data"]))
    raise DatasetNotFoundError(
        f"imagenet16-120 not found: expected {', '.join(IMAGENET16_TRAIN[:1])}..10 and val_data "
        f"(NAS-Bench-201's ImageNet16 pickles) in one of {', '.join(str(d) for d in dirs)}; "
        f"pass --data-dir DIR containing ImageNet16/")


# -- image folder -------------------------------------------------------------------------------
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for k, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTS:
                items.append((f, k))
    return classes, items


def _load_images(items, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image
    mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(items), size, size, channels), dtype=np.uint8)
    for i, (f, _) in enumerate(items):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                x[i] = np.asarray(im).reshape(size, size, channels)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            # PIL: UnidentifiedImageError and truncated files are OSErrors
            reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else \
                type(e).__name__
            raise ArchgradError(f"{f} is not a readable image ({reason}); every file named "
                                f"like an image ({', '.join(sorted(IMAGE_EXTS))}) in an "
                                f"imagefolder must be one") from None
    y = np.array([k for _, k in items], dtype=np.int64)
    return _t(x.transpose(0, 3, 1, 2)), _t(y)


def read_imagefolder(data_dir=None, image_size: int = 32, channels: int = 3,
                     test_fraction: float = 0.2) -> Arrays:
    """A directory of class sub-folders of images. With ``train/`` and ``test/`` sub-directories
    those are the splits; otherwise a fixed ``test_fraction`` of each class is held out. Images
    are resized to ``image_size`` squared and converted to RGB (``channels=1``: grayscale)."""
    if data_dir is None:
        raise ArchgradError("dataset 'imagefolder' needs --data-dir DIR: a directory of class "
                            "sub-folders of images (or DIR/train and DIR/test of them)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"imagefolder directory {root} does not exist; expected "
                                   f"{root}/<class>/<image files>")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, tr = _scan(root / "train")
        classes_te, te = _scan(root / "test")
        if classes_te != classes:
            raise ArchgradError(f"{root}/train and {root}/test have different class folders")
    else:
        classes, items = _scan(root)
        rng = np.random.RandomState(0)
        tr, te = [], []
        for k in range(len(classes)):
            mine = [it for it in items if it[1] == k]
            order = rng.permutation(len(mine))
            n_te = int(round(len(mine) * test_fraction)) if len(mine) > 1 else 0
            te += [mine[i] for i in order[:n_te]]
            tr += [mine[i] for i in order[n_te:]]
    if len(classes) < 2 or not tr:
        raise DatasetNotFoundError(
            f"imagefolder {root} has {len(classes)} class folder(s) and {len(tr)} training "
            f"images; expected {root}/<class>/<image files> with at least two classes "
            f"(extensions: {', '.join(sorted(IMAGE_EXTS))})")
    xtr, ytr = _load_images(tr, image_size, channels)
    xte, yte = _load_images(te, image_size, channels) if te else (xtr[:0], ytr[:0])
    return xtr, ytr, xte, yte


# -- synthetic ----------------------------------------------------------------------------------
def read_synthetic(data_dir=None, n_train: int = 512, n_test: int = 128, image_size: int = 8,
                   channels: int = 3, num_classes: int = 10, seed: int = 0) -> Arrays:
    """Random class templates plus noise: learnable, instant, for tests."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, image_size, image_size, generator=g) * 255

    def make(n):
        y = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randn(n, channels, image_size, image_size, generator=g) * 60
        return (templates[y] + noise).clamp(0, 255).round().to(torch.uint8), y

    return (*make(n_train), *make(n_test))
