import pytest
import torch

import archgrad
from archgrad.benchmarks.nb201 import NB201Benchmark
from archgrad.core.arch import Mix
from archgrad.core.ops import count_parameters
from archgrad.errors import GenotypeError
from archgrad.spaces import NB201Genotype, get_space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL = lambda op: f"|{op}~0|+|{op}~0|{op}~1|+|{op}~0|{op}~1|{op}~2|"


def test_round_trip_all_15625_architectures():
    seen = set()
    space = get_space("nb201")
    for g in NB201Genotype.all():
        s = str(g)
        assert NB201Genotype.parse(s) == g
        assert space.genotype_from_indices(space.indices(g)) == g
        seen.add(s)
    assert len(seen) == 15625
    # exactly the benchmark's strings
    assert seen == set(NB201Benchmark.load().arch_strs)


@pytest.mark.parametrize("genotype,params", [
    (BEST, 1_073_466), (ALL("nor_conv_3x3"), 1_531_546), (ALL("skip_connect"), 73_306)])
def test_standalone_parameter_counts_match_the_benchmark(genotype, params):
    assert count_parameters(archgrad.build("nb201", genotype)) == params


def test_search_supernet_has_the_benchmark_search_settings():
    sp = get_space("nb201")
    assert count_parameters(sp.supernet()) == 1_692_826
    (g,) = sp.choices()
    assert g.shape == (6, 5)
    assert g.ops == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert g.edges == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    strat = archgrad.get_strategy("darts")
    strat.setup(sp.choices(), sp.supernet(), seed=0)
    assert tuple(strat.arch.theta["cell"].shape) == (6, 5)
    # DARTS init: 1e-3 * N(0, 1)
    assert strat.arch.theta["cell"].abs().max() < 1e-2


def test_options_channels_cells_and_no_none():
    sp = get_space("nb201", C=8, N=2, include_none=False)
    (g,) = sp.choices()
    assert g.shape == (6, 4) and "none" not in g.ops
    net = sp.supernet()
    assert sum(1 for m in net.modules() if type(m).__name__.endswith("SearchCell")) == 6
    assert net.net.stem[0].out_channels == 8
    # a genotype that uses 'none' still maps to the supernet: the edge is simply absent
    mix = sp.discrete_mix(ALL("none"))
    assert mix.weights["cell"].sum() == 0
    x = torch.randn(2, 3, 8, 8)
    assert net(x, mix).shape == (2, 10)


@pytest.mark.parametrize("bad", [
    "", "|nor_conv_3x3~0|", "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|conv_9x9~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
])
def test_malformed_genotypes_raise_one_line_errors(bad):
    with pytest.raises(GenotypeError) as e:
        NB201Genotype.parse(bad)
    assert "\n" not in str(e.value)


def test_derive_argmax_and_exclude_none():
    sp = get_space("nb201")
    p = torch.full((6, 5), 0.1)
    p[:, 0] = 0.5          # none strongest everywhere
    p[:, 3] = 0.3          # then conv 3x3
    assert str(sp.derive({"cell": p})) == ALL("none")
    assert str(sp.derive({"cell": p}, exclude_none=True)) == ALL("nor_conv_3x3")


def test_discrete_mix_computes_exactly_the_genotype():
    """The supernet under a one-hot mix equals a straightforward evaluation of the chosen ops."""
    torch.manual_seed(0)
    sp = get_space("nb201", C=4, N=1)
    net = sp.supernet().eval()
    x = torch.randn(3, 3, 8, 8)
    geno = NB201Genotype.parse(BEST)
    y = net(x, sp.discrete_mix(geno))
    # the same with a dense mix whose rows are one-hot: every op computed, zero-weighted
    idx = sp.indices(geno)["cell"]
    w = torch.zeros(6, 5)
    w[torch.arange(6), idx] = 1.0
    y_dense = net(x, Mix({"cell": w}))
    assert torch.allclose(y, y_dense, atol=1e-6)
