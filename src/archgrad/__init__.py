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
from .engine.train import load_model, plan_train, train  # noqa: E402
from .experiments.sweep import reproduce, run_sweep  # noqa: E402
from .search import SearchResult, load_result, plan_search, search  # noqa: E402

#: modules that moved into the layers (core, engine, runs, experiments): their old names still
#: import, as the same module objects (``archgrad.rundir`` is ``archgrad.runs.rundir``)
MOVED = {name: f"archgrad.{layer}.{name}" for layer, names in {
    "core": ("arch", "ops", "bn", "costs", "sampling", "estimator", "updates", "strategy",
             "addons", "options", "collapse", "selection"),
    "engine": ("task", "lmtask", "train", "lmtrain", "dist", "memory", "profile", "runtime"),
    "runs": ("rundir", "schemas"),
    "experiments": ("sweep", "report", "plot")}.items() for name in names}


def _alias_moved_modules() -> None:
    import importlib
    import importlib.abc
    import importlib.util
    import sys

    class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            short = fullname[len("archgrad."):] if fullname.startswith("archgrad.") else None
            if short in MOVED:
                return importlib.util.spec_from_loader(fullname, self)
            return None

        def create_module(self, spec):
            module = importlib.import_module(MOVED[spec.name[len("archgrad."):]])
            spec.loader_state = module.__spec__
            return module

        def exec_module(self, module):  # it keeps its own spec (the import set the alias's)
            module.__spec__ = module.__spec__.loader_state

    package = sys.modules[__name__]
    for short, real in MOVED.items():  # the ones imported already; archgrad.train stays the
        if real in sys.modules:         # function, archgrad.search likewise
            sys.modules.setdefault(f"archgrad.{short}", sys.modules[real])
            if not hasattr(package, short):
                setattr(package, short, sys.modules[real])
    sys.meta_path.append(_Alias())


_alias_moved_modules()

__all__ = ["search", "train", "build", "supernet", "get_space", "lookup", "get_strategy",
           "list_spaces", "list_strategies", "list_datasets", "SearchResult", "ArchgradError",
           "GenotypeError", "UnknownNameError", "DatasetNotFoundError", "load_model", "load_result",
           "errors", "run_sweep", "reproduce", "plan_search", "plan_train", "__version__"]
