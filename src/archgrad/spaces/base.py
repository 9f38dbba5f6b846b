"""The search-space interface every space implements.

A space never imports a strategy: it declares its decisions (:meth:`SearchSpace.choices`),
builds a supernet whose ``forward(x, mix)`` takes its mixing weights from outside, turns
probabilities into a genotype by its own rule (:meth:`SearchSpace.derive`), and builds the
stand-alone network of a genotype (:meth:`SearchSpace.build`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.arch import ChoiceGroup, Mix
from ..errors import ArchgradError


class Genotype(ABC):
    """An immutable architecture value with one canonical string form (``str(g)``)."""

    @abstractmethod
    def __str__(self) -> str: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, str(self)))


class Supernet(nn.Module):
    """The search network: shared weights only; no architecture parameters, loss or sampling."""

    def forward(self, x: Tensor, mix: Mix) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class SearchSpace(ABC):
    """A configured search space (channels, depth, number of classes ...)."""

    name: ClassVar[str]
    #: options a user may set, with their defaults; ``describe_options`` documents them
    options: ClassVar[dict[str, tuple[Any, str]]] = {}
    #: data modality this space consumes: "image" (N,C,H,W), "sequence", or "own" (the space
    #: generates its own data, like the toy teacher-student task)
    modality: ClassVar[str] = "image"
    #: the smallest sensible configuration, for tests and smoke runs
    tiny: ClassVar[dict[str, Any]] = {}
    #: name of the data the space generates itself (None: it takes a registered dataset)
    own_data: ClassVar[str | None] = None
    own_data_epochs: ClassVar[int | None] = None
    default_batch_size: ClassVar[int] = 64
    #: the search's epochs and batch size in this space's own recipe (the recurrent cells:
    #: their papers'), ahead of a strategy's (which come from image searches)
    search_epochs: ClassVar[int | None] = None
    search_batch_size: ClassVar[int | None] = None
    #: architecture-optimizer defaults this space's experiments use, applied to strategies that
    #: step with Adam where the user sets none (the toy task: AdvantageNAS's Adam 1e-3)
    arch_defaults: ClassVar[dict[str, Any]] = {}
    #: likewise for every strategy that takes the option (the toy task: an architecture step
    #: every iteration; the DARTS space: GDAS without the constant terms)
    strategy_defaults: ClassVar[dict[str, Any]] = {}
    #: where each of those defaults comes from (docs/defaults.md prints it; a test requires one
    #: per default)
    defaults_sources: ClassVar[dict[str, str]] = {}
    #: which options the command line's --channels / --cells set, for the search network and
    #: for the stand-alone network of a genotype
    #: the option that sets the supernet's depth, and P-DARTS's stage depths for it
    depth_option: ClassVar[str | None] = None
    #: the inputs each node keeps when a cell is derived (DARTS's cell: 2); None: every edge
    #: stays (NAS-Bench-201). DARTS-PT's topology selection reads it
    inputs_per_node: ClassVar[int | None] = None
    progressive_depths: ClassVar[tuple[int, ...] | None] = None
    #: the options --channels and --cells set (an option name, or a tuple of names)
    search_flags: ClassVar[dict[str, Any]] = {"channels": "C", "cells": "N"}
    build_flags: ClassVar[dict[str, Any]] = {"channels": "C", "cells": "N"}
    #: options that shape the search network only (the network of a genotype ignores them)
    search_only: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options):
        from ..core.options import check_options
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ArchgradError(
                f"space '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(sorted(self.options)) or 'none'}")
        options = check_options(f"space '{self.name}'", options,
                                {k: d for k, (d, _) in self.options.items()})
        self.config = {k: options.get(k, default) for k, (default, _) in self.options.items()}

    # -- decisions ---------------------------------------------------------------------------
    @abstractmethod
    def choices(self) -> list[ChoiceGroup]: ...

    def groups(self) -> dict[str, ChoiceGroup]:
        return {g.label: g for g in self.choices()}

    # -- networks ----------------------------------------------------------------------------
    @abstractmethod
    def supernet(self) -> Supernet: ...

    @abstractmethod
    def build(self, genotype: Genotype | str) -> nn.Module: ...

    def network_options(self) -> dict[str, Any]:
        """The options :meth:`build` uses, as it resolves them (what `train --dry-run` shows)."""
        return {k: v for k, v in self.config.items() if k not in self.search_only}

    # -- genotypes ---------------------------------------------------------------------------
    @abstractmethod
    def parse(self, text: str) -> Genotype: ...

    @abstractmethod
    def derive(self, probs: Mapping[str, Tensor], **rule) -> Genotype:
        """The space's own rule from per-edge probabilities to a discrete architecture."""

    @abstractmethod
    def genotype_from_indices(self, indices: Mapping[str, Sequence[int]]) -> Genotype:
        """The genotype that picks candidate ``indices[label][e]`` on each edge."""

    @abstractmethod
    def indices(self, genotype: Genotype | str) -> dict[str, list[int]]:
        """Inverse of :meth:`genotype_from_indices`; -1 marks an absent edge."""

    def genotype(self, value: Genotype | str) -> Genotype:
        return self.parse(value) if isinstance(value, str) else value

    def discrete_mix(self, genotype: Genotype | str, device=None) -> Mix:
        """The one-hot mix under which the supernet computes exactly ``genotype``."""
        return Mix.onehot(self.indices(self.genotype(genotype)), self.groups(), device=device)

    # -- extras ------------------------------------------------------------------------------
    def task(self, model: nn.Module, batch_size: int, seed: int, device):
        """The search task of a space that generates its own data (``own_data``)."""
        raise ArchgradError(f"space '{self.name}' takes a dataset; it has no task of its own")

    def op_costs(self) -> dict[str, Tensor]:
        """Per group, an (edges x candidates x 3) table of each candidate's parameters, FLOPs and
        memory access cost summed over the cells that share the group (SNAS Appendix F)."""
        raise ArchgradError(f"space '{self.name}' does not provide resource costs")

    def benchmark(self):
        """A tabular benchmark of this space's architectures, or None."""
        return None

    def report(self, model: nn.Module, genotype: Genotype) -> dict[str, Any]:
        """Space-specific figures of a derived genotype for the run's records (the toy task:
        its teacher and whether the search found it)."""
        return {}

    def example_batch(self, batch_size: int = 4, generator: torch.Generator | None = None,
                      size: int = 8) -> tuple[Tensor, Tensor]:
        """A random batch of the shape this space's networks consume (for tests and benches)."""
        g = generator or torch.Generator().manual_seed(0)
        c = self.config
        x = torch.randn(batch_size, c.get("in_channels", 3), size, size, generator=g)
        return x, torch.randint(0, c.get("num_classes", 10), (batch_size,), generator=g)

    def input_shape(self, image_size: int | None = None) -> tuple[int, ...]:
        """The shape of one input of the stand-alone network (``info``, ``export``):
        ``image_size`` square, else the evaluation network's (32; 224 for ImageNet)."""
        size = image_size or (224 if self.config.get("network") == "imagenet" else 32)
        return (self.config.get("in_channels", 3), size, size)

    def meta_input(self, batch: int, data=None):
        """An input batch on the meta device (shapes only), for the memory estimate."""
        if data is not None and hasattr(data, "image_size"):
            return torch.empty(batch, data.in_channels, data.image_size, data.image_size,
                               device="meta")
        x, _ = self.example_batch(1)
        return torch.empty(batch, *x.shape[1:], device="meta")

    def train_recipe(self) -> dict[str, Any]:
        """Default recipe for training a derived architecture from scratch."""
        return {"epochs": 600, "batch_size": 96, "lr": 0.025, "lr_min": 0.0, "momentum": 0.9,
                "weight_decay": 3e-4, "nesterov": False, "grad_clip": 5.0}

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)

    @classmethod
    def describe_options(cls) -> dict[str, str]:
        return {k: f"{doc} (default: {default})" for k, (default, doc) in cls.options.items()}


def check_choice_indices(space: SearchSpace, indices: Mapping[str, Sequence[int]]) -> None:
    groups = space.groups()
    for label, idx in indices.items():
        g = groups[label]
        if len(idx) != len(g.edges):
            raise ValueError(f"{label}: expected {len(g.edges)} indices, got {len(idx)}")
        for k in idx:
            if not -1 <= k < len(g.candidates):
                raise ValueError(f"{label}: candidate index {k} out of range")


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
