"""Λ-DARTS (Movahedi, Adabinejad, Imani, Keshtkaran, Ghorbani & Pourmohammadi, ICLR 2023):
harmonizing the cells' operation selection.

The weights descend the training loss minus lambda_t times the alignment of the cells'
gradients of the shared architecture (the addon ``lambda_reg``; its gradient in the weights by
central differences, eps0 = 1e-4); lambda_t = 0.125 * epoch / (epochs - 1) (the release's
NAS-Bench-201 DARTS-V1.py). The architecture steps as first-order DARTS.
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("lambda-darts", family="darts", adam=True, defaults={"lambda_reg": 0.125}, sources={
    **SOURCES, "lambda_reg": "Λ-DARTS release DARTS-V1.py: lambda_ 0.125, "
                             "lambda_ * epoch / (total_epoch - 1)",
    "lambda_eps": "Λ-DARTS release: epsilon_0 1e-4", "*": "Λ-DARTS (Movahedi et al. 2023)"})
def lambda_darts(**options) -> Strategy:
    """Λ-DARTS: DARTS whose weights align the cells' architecture gradients."""
    return Strategy("lambda-darts", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))
