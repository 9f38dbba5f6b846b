"""Search spaces, by name."""
from __future__ import annotations

from ..registry import Registry
from .base import Genotype, SearchSpace, Supernet
from .darts import DartsGenotype, DartsSpace, register_genotype
from .nb201 import NB201Genotype, NB201Space
from .rnn import AdvantageRNNSpace, DartsRNNSpace, EdgeGenotype, RNNGenotype
from .toy import ToyGenotype, ToySpace

SPACES: Registry[type[SearchSpace]] = Registry("space")
SPACES.register("nb201", NB201Space)
SPACES.register("toy", ToySpace)
SPACES.register("darts", DartsSpace)
SPACES.register("darts-rnn", DartsRNNSpace)
SPACES.register("advantagenas-rnn", AdvantageRNNSpace)


def get_space(name: str, **options) -> SearchSpace:
    """An instance of the registered space ``name`` configured with ``options``."""
    return SPACES.get(name)(**options)


__all__ = ["SPACES", "get_space", "Genotype", "SearchSpace", "Supernet", "NB201Space",
           "NB201Genotype", "ToySpace", "ToyGenotype", "DartsSpace", "DartsGenotype",
           "register_genotype", "DartsRNNSpace", "AdvantageRNNSpace", "RNNGenotype",
           "EdgeGenotype"]
