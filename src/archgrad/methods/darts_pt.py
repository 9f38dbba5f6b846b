"""DARTS-PT (Wang, Cheng, Chen, Tang & Hsieh, ICLR 2021): DARTS's supernet, the architecture
selected by perturbation instead of by the magnitude of its parameters.

First-order DARTS, then ``archgrad.selection``'s procedure on the final supernet (edge by edge
the op whose removal drops the validation accuracy most, 5 epochs of fine-tuning between two
decisions, then the DARTS cell's topology). Any strategy's supernet takes it:
``--set derive=perturbation``.
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("darts-pt", family="darts", adam=True, defaults={"derive": "perturbation"},
          sources={**SOURCES, "derive": "DARTS-PT Algorithm 1",
                   "pt_tune_epochs": "DARTS-PT release: proj_intv 5 epochs of tuning between "
                                     "two decisions",
                   "pt_examples": "archgrad: the whole validation split (0)",
                   "*": "DARTS-PT (Wang et al. 2021)"})
def darts_pt(**options) -> Strategy:
    """DARTS-PT: DARTS with perturbation-based architecture selection (Wang et al. 2021)."""
    return Strategy("darts-pt", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))
