"""β-DARTS (Ye, Li, Fu, Zhang & Wang, CVPR 2022): beta-decay regularization.

The architecture's loss gains lambda_t * mean_e log sum_k exp(beta_e,k) (eq. 9, the addon
``beta_decay``), whose gradient softmax(beta) decays every logit in proportion to its weight
and keeps the distribution's scale in check; lambda_t grows linearly, 50 * epoch / 100 in the
release's NAS-Bench-201 architect. Otherwise first-order DARTS. Any strategy with logits takes
the term (``--set beta_decay=50`` on GDAS).
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("beta-darts", family="darts", adam=True, defaults={"beta_decay": 50.0}, sources={
    **SOURCES, "beta_decay": "β-DARTS eq. 9; release architect _backward_step: "
                             "weights = 0 + 50 * epoch / 100",
    "beta_decay_span": "β-DARTS release (the 100 of 50 * epoch / 100)",
    "*": "β-DARTS (Ye et al. 2022)"})
def beta_darts(**options) -> Strategy:
    """β-DARTS: DARTS with the beta-decay regularization of the logits (Ye et al. 2022)."""
    return Strategy("beta-darts", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))
