"""OLES (Jiang, Ji, Chen & Wang, NeurIPS 2023): operation-level early stopping.

A parametric candidate whose gradients on the training and the validation data stop agreeing
(gradient matching below 0.4 over 20 iterations) is overfitting the training data; it stops
training for the rest of the search (the addon ``oles``, any strategy takes it), which removes
the skip connection's advantage without changing the loss. Otherwise first-order DARTS
(PasaLab/oles train_search.py).
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("oles", family="darts", adam=True, defaults={"oles": 0.4}, sources={
    **SOURCES, "oles": "OLES release train_search.py: patience 0.4",
    "oles_window": "OLES release: count 20",
    "oles_match": "OLES release check_grads_cosine (the previous training gradient against "
                  "itself plus the validation gradient)",
    "*": "OLES (Jiang et al. 2023)"})
def oles(**options) -> Strategy:
    """OLES: DARTS whose overfitting operations stop training (Jiang et al. 2023)."""
    return Strategy("oles", Estimator(), adam_update(options), bilevel=True, arch_first=True,
                    **common(options))
