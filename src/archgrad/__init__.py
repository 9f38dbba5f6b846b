"""archgrad: gradient-based one-shot neural architecture search.

Any search strategy runs on any search space::

    import archgrad
    result = archgrad.search(space="nb201", strategy="darts", dataset="digits", epochs=10)
    print(result.genotype, archgrad.lookup(result.genotype))
    net = archgrad.build("nb201", result.genotype)          # the stand-alone nn.Module
    metrics = archgrad.train("nb201", result.genotype, dataset="digits", epochs=20)
"""
from __future__ import annotations

__version__ = "0.1.0"

from torch import nn

from .errors import ArchgradError, DatasetNotFoundError, GenotypeError, UnknownNameError


def build(space: str, genotype, **options) -> nn.Module:
    """The stand-alone network of ``genotype`` (a Genotype or its string) in ``space``."""
    from .spaces import get_space
    return get_space(space, **options).build(genotype)


def supernet(space: str, **options):
    """The search network of ``space``: its parameters are the shared weights; architecture
    parameters live outside it (``forward(x, mix)``)."""
    from .spaces import get_space
    return get_space(space, **options).supernet()


def get_space(name: str, **options):
    """A configured search space (``choices()``, ``supernet()``, ``derive()``, ``build()``)."""
    from .spaces import get_space as _get
    return _get(name, **options)


def lookup(genotype, dataset: str = "cifar10") -> dict:
    """NAS-Bench-201's figures for ``genotype`` on ``dataset`` (cifar10, cifar10-valid, cifar100,
    ImageNet16-120): accuracies at 200 and 12 epochs, rank and percentile among all 15625."""
    from .benchmarks.nb201 import NB201Benchmark
    return NB201Benchmark.load().lookup(genotype, dataset)


def get_strategy(name: str, **options):
    """A registered strategy with its paper defaults overridden by ``options``."""
    from .methods import make_strategy
    return make_strategy(name, **options)


def list_spaces() -> list[str]:
    from .spaces import SPACES
    return SPACES.names()


def list_strategies() -> list[str]:
    from .methods import STRATEGIES
    return STRATEGIES.names()


def list_datasets() -> list[str]:
    from .data import DATASETS
    return DATASETS.names()


from . import errors  # noqa: E402
from .search import SearchResult, load_result, plan_search, search  # noqa: E402
from .sweep import reproduce, run_sweep  # noqa: E402
from .train import load_model, plan_train, train  # noqa: E402

__all__ = ["search", "train", "build", "supernet", "get_space", "lookup", "get_strategy",
           "list_spaces", "list_strategies", "list_datasets", "SearchResult", "ArchgradError",
           "GenotypeError", "UnknownNameError", "DatasetNotFoundError", "load_model", "load_result",
           "errors", "run_sweep", "reproduce", "plan_search", "plan_train", "__version__"]
