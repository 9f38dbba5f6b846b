import pytest

import archgrad
from archgrad.benchmarks.nb201 import NB201Benchmark
from archgrad.errors import ArchgradError, GenotypeError, UnknownNameError

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def test_table_covers_every_architecture():
    b = NB201Benchmark.load()
    assert len(b) == 15625 and len(set(b.arch_strs)) == 15625
    assert sorted(b.bench_index.tolist()) == list(range(15625))


def test_known_values():
    r = archgrad.lookup(BEST, "cifar10")
    assert r["test"] == pytest.approx(94.3733)
    assert r["rank"] == 1 and r["percentile"] == 100.0
    assert archgrad.lookup(SKIP)["test"] == pytest.approx(54.2967)
    b = NB201Benchmark.load()
    assert b.best("cifar100")[1] == pytest.approx(73.5133)
    assert b.best("ImageNet16-120")[1] == pytest.approx(47.3111)
    assert b.best("cifar10") == (BEST, pytest.approx(94.3733))


def test_every_dataset_and_metric_is_queryable():
    for ds, metrics in {"cifar10": ["test", "test_12ep"],
                        "cifar10-valid": ["valid", "test", "train", "valid_12ep"],
                        "cifar100": ["test", "test_12ep", "valid_12ep"],
                        "ImageNet16-120": ["test", "test_12ep", "valid_12ep"]}.items():
        r = archgrad.lookup(BEST, ds)
        for m in metrics:
            assert 0 < r[m] <= 100
    assert archgrad.lookup(BEST, "imagenet16-120")["dataset"] == "ImageNet16-120"


def test_rank_and_percentile_are_consistent():
    b = NB201Benchmark.load()
    # the all-skip cell: how many cells are strictly better
    v = b.query(SKIP, "cifar10")
    better = int((b.table["cifar10_test"] > v).sum())
    assert b.rank(SKIP) == better + 1
    assert b.percentile(SKIP) == pytest.approx(100 * (15625 - better) / 15625)


def test_bad_lookups():
    with pytest.raises(UnknownNameError, match="choose one of"):
        archgrad.lookup(BEST, "svhn")
    with pytest.raises(GenotypeError):
        archgrad.lookup("|nor_conv_3x3~0|")
    with pytest.raises(ArchgradError, match="metric"):
        NB201Benchmark.load().query(BEST, "cifar10", "valid")
