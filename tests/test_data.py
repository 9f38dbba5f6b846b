import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from archgrad.data import BatchLoader, load_dataset, random_crop_flip
from archgrad.errors import ArchgradError, DatasetNotFoundError


def _idx(path, arr, gz):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_layout(tmp_path, gz):
    rng = np.random.RandomState(0)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte", rng.randint(0, 255, (30, 28, 28)), gz)
    _idx(d / "train-labels-idx1-ubyte", np.arange(30) % 10, gz)
    _idx(d / "t10k-images-idx3-ubyte", rng.randint(0, 255, (10, 28, 28)), gz)
    _idx(d / "t10k-labels-idx1-ubyte", np.arange(10), gz)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.num_classes == 10
    assert ds.x_test.shape == (10, 1, 28, 28) and not ds.augment
    assert load_dataset("mnist", d).x_train.shape == (30, 1, 28, 28)


def _cifar_dir(root, name="cifar-10-batches-py", n=20):
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": rng.randint(0, 255, (n, 3072)).astype(np.uint8),
                         b"labels": list(np.arange(n) % 10)}, fh)
    return d


def test_cifar10_layout_and_augmentation(tmp_path):
    _cifar_dir(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.augment
    # --data-dir may also point at the batches directory itself
    assert load_dataset("cifar10", tmp_path / "cifar-10-batches-py").x_train.shape[0] == 100


def test_cifar100_layout(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for f, n in (("train", 50), ("test", 10)):
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": np.zeros((n, 3072), np.uint8),
                         b"fine_labels": list(np.arange(n) % 100)}, fh)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.x_train.shape == (50, 3, 32, 32)


def test_imagefolder(tmp_path):
    from PIL import Image
    for c in ("cat", "dog", "eel"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 24, 3), i * 40, np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.num_classes == 3
    assert ds.x_train.shape[1:] == (3, 32, 32)
    assert len(ds.y_train) + len(ds.y_test) == 15 and len(ds.y_test) == 3


def test_missing_datasets_name_path_and_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(e.value) and "cifar-10-batches-py" in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="<class>"):
        load_dataset("imagefolder", tmp_path / "nope")


def test_digits_and_subset():
    ds = load_dataset("digits")
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797
    small = load_dataset("digits", subset=100)
    assert len(small.y_train) == 100 and len(small.y_test) == 100
    assert len(set(small.y_train.tolist())) == 10  # a shuffled subset keeps the classes
    with pytest.raises(ArchgradError):
        load_dataset("digits", subset=0)


def test_loader_is_deterministic_per_epoch_and_normalises():
    ds = load_dataset("synthetic")
    mk = lambda: BatchLoader(ds.x_train, ds.y_train, 64, mean=ds.mean, std=ds.std, shuffle=True,
                             augment=True, seed=3)
    a = [x for x, _ in mk().epoch(5)]
    b = [x for x, _ in mk().epoch(5)]
    c = [x for x, _ in mk().epoch(6)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    full = torch.cat([x for x, _ in BatchLoader(ds.x_train, ds.y_train, 64, mean=ds.mean,
                                                std=ds.std).epoch(0)])
    assert full.mean().abs() < 0.05 and (full.std() - 1).abs() < 0.05


def test_random_crop_flip_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    y = random_crop_flip(x, 2, g)
    assert y.shape == x.shape
    # every output row is a contiguous (possibly flipped) window of a padded input row
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        rows = [padded[n, 0, i].tolist() for i in range(10)]
        for r in y[n, 0].tolist():
            ok = any(r == row[j:j + 6] or r[::-1] == row[j:j + 6] for row in rows for j in range(5))
            assert ok


@pytest.mark.parametrize("kw", [dict(shuffle=True, augment=True, cutout=3),
                                dict(shuffle=True, augment=True, pad=0),
                                dict(shuffle=False),
                                dict(shuffle=True, augment=True, cutout=4, shard=(1, 2))])
def test_a_dataset_kept_on_the_device_gives_the_same_batches(kw):
    """The resident path (an epoch's draws made up front and copied once) draws the same crops,
    flips and cutouts in the same order as batch by batch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    mean, std = torch.rand(3), torch.rand(3) + 0.5
    for seed in (0, 5):
        a = BatchLoader(x, y, 16, mean=mean, std=std, seed=seed, **kw)
        b = BatchLoader(x, y, 16, mean=mean, std=std, seed=seed, **kw)
        assert not b.resident  # only on an accelerator
        b.resident = True
        for e in range(3):
            pairs = list(zip(a.epoch(e), b.epoch(e)))
            assert len(pairs) == len(a)
            for (xa, ya), (xb, yb) in pairs:
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_data_directory_may_start_with_the_home_directory(ptb_dir, tmp_path, monkeypatch):
    from archgrad.data import load_dataset
    from archgrad.data.text import find_corpus
    monkeypatch.setenv("HOME", str(ptb_dir.parent))
    files, _ = find_corpus(f"~/{ptb_dir.name}")
    assert files["train"].parent == ptb_dir
    img = tmp_path / "imgs"
    for c in ("a", "b"):
        (img / c).mkdir(parents=True)
        for i in range(3):
            from PIL import Image
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(img / c / f"{i}.png")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(load_dataset("imagefolder", "~/imgs").x_train) > 0
