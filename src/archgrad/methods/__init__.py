"""Named search strategies: small aliases that pick an estimator, an update rule and a schedule.

``make_strategy(name, **options)`` builds one; ``STRATEGIES`` lists them. Options common to every
strategy configure the weight optimizer (``lr``, ``lr_min``, ``momentum``, ``weight_decay``,
``grad_clip``, ``nesterov``), the schedule (``warmup_epochs``) and the derivation (``derive``:
"argmax" or "process-best"; ``exclude_none``: never derive the zero op).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields

from ..errors import ArchgradError
from ..registry import Registry, first_paragraph
from ..strategy import Strategy, WeightOptim

COMMON_OPTIONS = {
    "lr": "initial learning rate of the weights (SGD)",
    "lr_min": "final learning rate of the cosine schedule",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay of the weights",
    "grad_clip": "gradient-norm clip of the weights (0 or None: off)",
    "nesterov": "Nesterov momentum",
    "optimizer": "weight optimizer: 'sgd' (DARTS) or 'adam'",
    "warmup_epochs": "epochs that train the weights only, architecture frozen (a fraction "
                     "below 1: that share of the epochs)",
    "derive": "final architecture: 'argmax' of the distribution or 'process-best' (the best "
              "sampled architecture by validation reward)",
    "exclude_none": "never derive the zero op",
}


@dataclass(frozen=True)
class StrategyEntry:
    factory: Callable[..., Strategy]
    family: str
    accepts: tuple[str, ...]
    doc: str


STRATEGIES: Registry[StrategyEntry] = Registry("strategy")


def register(name: str, *, family: str, accepts: tuple[str, ...] = ()):
    """Register a factory ``(**options) -> Strategy`` under ``name``."""

    def deco(fn):
        own = tuple(p for p, v in inspect.signature(fn).parameters.items()
                    if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD))
        doc = first_paragraph(fn.__doc__)
        fam_accepts = FAMILY_OPTIONS.get(family, ())
        STRATEGIES.register(name, StrategyEntry(fn, family, own + accepts + fam_accepts, doc),
                            help=doc)
        return fn

    return deco


#: options accepted by every member of a family (those of its shared builder)
FAMILY_OPTIONS: dict[str, tuple[str, ...]] = {
    "darts": ("arch_lr", "arch_betas", "arch_weight_decay", "init_scale"),
}


def common(kw: dict) -> dict:
    """Split the common options off into ``Strategy`` keyword arguments."""
    kw = dict(kw)
    w = {f.name: kw.pop(f.name) for f in fields(WeightOptim) if f.name in kw}
    weights = WeightOptim(**w)
    out = {"weights": weights}
    if "warmup_epochs" in kw:
        w = kw.pop("warmup_epochs")
        out["warmup_epochs"] = w if isinstance(w, float) and w < 1 else int(w)
    if "derive" in kw:
        out["derive"] = kw.pop("derive")
    if "exclude_none" in kw:
        out["derive_options"] = {"exclude_none": bool(kw.pop("exclude_none"))}
    if kw:
        raise ArchgradError(f"unexpected strategy option(s): {', '.join(sorted(kw))}")
    return out


def accepted_options(name: str) -> list[str]:
    e = STRATEGIES.get(name)
    return sorted(set(e.accepts) | set(COMMON_OPTIONS))


def make_strategy(name: str, **options) -> Strategy:
    """Build the registered strategy ``name`` with paper defaults overridden by ``options``."""
    entry = STRATEGIES.get(name)
    accepted = set(entry.accepts) | set(COMMON_OPTIONS)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ArchgradError(
            f"strategy '{name}' has no option {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(accepted))}")
    return entry.factory(**options)


# importing the method modules registers them
from . import (advantage, darts, gaea, gdas, idarts, nasp, parsec, pcdarts,  # noqa: E402,F401,I001
               pdarts, proxyless, random_ws, reinforce, snas, xnas)

__all__ = ["STRATEGIES", "make_strategy", "register", "common", "accepted_options",
           "COMMON_OPTIONS"]
