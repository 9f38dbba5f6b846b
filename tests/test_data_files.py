"""Pickled data batches: ImageNet16-120 in NAS-Bench-201's published layout, and data files that
try to run code or do not hold a batch (refused in one line, exit 2, nothing run or made)."""
import os
import pickle

import numpy as np
import pytest

from archgrad.cli import main
from archgrad.data import load_dataset
from archgrad.data.readers import IMAGENET16_TRAIN
from archgrad.errors import ArchgradError


def _imagenet16_dir(root, per_batch=30, val=24, string_keys=True):
    d = root / "ImageNet16"
    d.mkdir(parents=True)
    rng = np.random.RandomState(0)
    key = (lambda k: k) if string_keys else (lambda k: k.encode())
    for i, f in enumerate(IMAGENET16_TRAIN + ["val_data"]):
        n = val if f == "val_data" else per_batch
        # 1-based labels over all 1000 classes: 1..120 kept, the rest dropped
        labels = [int(x) for x in (np.arange(n) * 37 + i) % 1000 + 1]
        with open(d / f, "wb") as fh:
            pickle.dump({key("data"): rng.randint(0, 255, (n, 768)).astype(np.uint8),
                         key("labels"): labels, key("mean"): np.zeros(768)}, fh)
    return d


@pytest.mark.parametrize("string_keys", [True, False])
def test_imagenet16_keeps_the_first_120_classes_with_zero_based_labels(tmp_path, string_keys):
    d = _imagenet16_dir(tmp_path, string_keys=string_keys)
    raw = []
    for f in IMAGENET16_TRAIN:
        with open(d / f, "rb") as fh:
            b = pickle.load(fh)
        k = "labels" if string_keys else b"labels"
        dk = "data" if string_keys else b"data"
        raw += [(row, lab) for row, lab in zip(b[dk], b[k]) if 1 <= lab <= 120]
    ds = load_dataset("imagenet16-120", tmp_path)
    assert ds.x_train.shape == (len(raw), 3, 16, 16) and ds.augment and ds.pad == 2
    assert int(ds.y_train.min()) >= 0 and int(ds.y_train.max()) <= 119
    # the same images and labels (load_dataset shuffles with a fixed permutation)
    got = sorted((bytes(x.flatten().numpy()), int(y)) for x, y in zip(ds.x_train, ds.y_train))
    want = sorted((bytes(r), lab - 1) for r, lab in raw)
    assert got == want
    assert load_dataset("imagenet16-120", d).x_test.shape[1:] == (3, 16, 16)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Codec:
    def __reduce__(self):
        import codecs
        return (codecs.encode, ("x", "rot_13"))


class _Eval:
    def __reduce__(self):
        return (eval, ("1+1",))


def _bad_files(marker):
    """name -> the bytes of a crafted cifar-10 data_batch_1."""
    return {
        "os.system": pickle.dumps({b"data": _Payload(marker), b"labels": []}),
        "eval": pickle.dumps(_Eval()),
        "a class of the library": pickle.dumps({b"data": ArchgradError("x"), b"labels": []}),
        "a codec other than latin-1": pickle.dumps({b"data": _Codec(), b"labels": []},
                                                   protocol=2),
        "a list": pickle.dumps([1, 2, 3]),
        "truncated": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:20],
        "wrong shape": pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        "no labels": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}),
    }


@pytest.mark.parametrize("case", list(_bad_files("m")))
def test_a_crafted_or_damaged_data_batch_is_refused_in_one_line(tmp_path, capsys, case):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    good = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]})
    for f in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        (d / f).write_bytes(good)
    marker = tmp_path / "ran"
    (d / "data_batch_1").write_bytes(_bad_files(str(marker))[case])
    with pytest.raises(ArchgradError) as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value) and "data_batch_1" in str(e.value)
    assert not marker.exists()
    out = tmp_path / "run"
    code = main(["search", "--space", "nb201", "--strategy", "darts", "--dataset", "cifar10",
                 "--data-dir", str(tmp_path), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "data_batch_1" in err[0], err
    assert not marker.exists() and not out.exists()


def test_protocol_2_batches_written_by_python_3_load(tmp_path):
    """Python 3 writes bytes into a protocol-2 pickle as _codecs.encode(text, 'latin1'), as
    the shared CIFAR-10 copy's materialize.py does: accepted."""
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": np.full((3, 3072), 7, np.uint8), b"labels": [0, 1, 2],
                         b"batch_label": b"x"}, fh, protocol=2)
    assert b"_codecs" in (d / "data_batch_1").read_bytes()
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and int(ds.x_train.max()) == 7
