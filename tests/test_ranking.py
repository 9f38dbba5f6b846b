"""How well a supernet ranks cells (issue 26, item 5): the rank correlations against exact
computations and scipy on known data, the top-k overlap, and the command on a finished search
of the NB201 supernet (its figures are the benchmark's, its scores reproducible); bad input is
one line, exit 2, nothing written."""
import itertools
import json
import random

import pytest
import scipy.stats
from conftest import run_cli as run

import archgrad
from archgrad.benchmarks.nb201 import NB201Benchmark
from archgrad.experiments.ranking import (
    kendall_tau,
    spearman_rho,
    supernet_ranking,
    top_k_overlap,
)


def _tau_by_pairs(x, y):  # Kendall's tau-a, by counting pairs (no ties)
    c = d = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s = (x[i] - x[j]) * (y[i] - y[j])
        c, d = c + (s > 0), d + (s < 0)
    return (c - d) / (len(x) * (len(x) - 1) / 2)


def _rho_by_ranks(x, y):  # 1 - 6 sum d^2 / (n (n^2 - 1)), no ties
    rx = {v: r for r, v in enumerate(sorted(x))}
    ry = {v: r for r, v in enumerate(sorted(y))}
    n = len(x)
    return 1 - 6 * sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y)) / (n * (n * n - 1))


def test_the_correlations_on_a_hand_example():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert kendall_tau(x, y) == pytest.approx(0.6)   # 8 concordant, 2 discordant of 10
    assert spearman_rho(x, y) == pytest.approx(0.8)  # 1 - 6 * 4 / 120
    assert kendall_tau(x, x[::-1]) == pytest.approx(-1) and spearman_rho(x, x) == pytest.approx(1)


@pytest.mark.parametrize("seed", range(5))
def test_the_correlations_match_exact_counts_and_scipy(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 40)
    x = rng.sample(range(1000), n)
    y = [v + rng.gauss(0, 300) for v in x]
    assert kendall_tau(x, y) == pytest.approx(_tau_by_pairs(x, y), abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(_rho_by_ranks(x, y), abs=1e-12)
    # with ties, scipy's tau-b and tie-averaged rho
    xt, yt = [round(v, -2) for v in x], [round(v, -2) for v in y]
    assert kendall_tau(xt, yt) == pytest.approx(scipy.stats.kendalltau(xt, yt).statistic)
    assert spearman_rho(xt, yt) == pytest.approx(scipy.stats.spearmanr(xt, yt).statistic)


def test_top_k_overlap():
    s = [0.9, 0.8, 0.1, 0.7, 0.2]
    b = [90, 10, 80, 70, 60]
    assert top_k_overlap(s, b, 1) == 1.0
    assert top_k_overlap(s, b, 2) == 0.5           # {0, 1} against {0, 2}
    assert top_k_overlap(s, b, 3) == pytest.approx(2 / 3)   # {0, 1, 3} against {0, 2, 3}
    assert top_k_overlap(s, b, 10) == 1.0


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rank") / "run"
    archgrad.search(space="nb201", dataset="synthetic", C=4, N=1, epochs=2, batch_size=32,
                    device="cpu", out=run_dir)
    return run_dir


@pytest.mark.parametrize("sample", ["uniform", "distribution"])
def test_a_search_ranks_cells_against_the_benchmark(nb201_run, sample):
    res = supernet_ranking(nb201_run, cells=10, sample=sample, bn_batches=2)
    assert res["cells"] == len(res["rows"]) == 10
    assert len({r["genotype"] for r in res["rows"]}) == 10  # distinct cells
    bench = NB201Benchmark.load()
    for r in res["rows"]:
        assert r["benchmark"] == bench.query(r["genotype"], "cifar10", "test")
        assert 0 <= r["shared_weights"] <= 100
    s = [r["shared_weights"] for r in res["rows"]]
    b = [r["benchmark"] for r in res["rows"]]
    assert res["kendall_tau"] == pytest.approx(scipy.stats.kendalltau(s, b).statistic)
    assert res["spearman_rho"] == pytest.approx(scipy.stats.spearmanr(s, b).statistic)
    assert res["top_k_overlap"]["5"] == top_k_overlap(s, b, 5)
    again = supernet_ranking(nb201_run, cells=10, sample=sample, bn_batches=2)
    assert again == res  # the same cells and scores: the weights are left as they were


def test_the_command_writes_the_figures_and_refuses_bad_input(nb201_run, tmp_path, capsys):
    out = tmp_path / "r" / "rk"
    code, o, err = run(capsys, "rank", str(nb201_run), "--cells", "6", "--bn-batches", "1",
                       "--dataset", "cifar100", "--out", str(out))
    assert code == 0, err
    assert "Kendall tau" in o and "Spearman rho" in o
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["dataset"] == "cifar100" and res["cells"] == 6
    assert out.with_suffix(".png").is_file()
    darts = tmp_path / "darts"
    archgrad.search(space="darts", dataset="synthetic", C=4, layers=3, steps=2, multiplier=2,
                    epochs=1, batch_size=16, device="cpu", out=darts)
    for argv, msg in [((str(darts),), "needs NAS-Bench-201's table"),
                      ((str(tmp_path / "none"),), "not a search run directory"),
                      ((str(nb201_run), "--cells", "1"), "at least 2"),
                      ((str(nb201_run), "--sample", "best"), "invalid choice")]:
        code, o, err = run(capsys, "rank", *argv, "--out", str(tmp_path / "x" / "y"))
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert not (tmp_path / "x").exists()
