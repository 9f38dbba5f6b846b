"""DARTS- (Chu, Wang, Zhang, Zhang, Wei & Yan, ICLR 2021): an auxiliary skip connection.

Every mixed edge adds beta_t times a skip connection outside the candidates (identity;
FactorizedReduce on a reduction cell's stride-2 edges, the release's ``MixedOp``), so the
candidate skip no longer carries the residual's optimization advantage; beta_t decays linearly
from 1 to 0 over the search (§3.2; the addon ``aux_skip``, the supernet option
``auxiliary_skip``). Otherwise first-order DARTS. The recurrent and toy spaces have no
auxiliary skip: there the strategy is DARTS.
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("darts-minus", family="darts", adam=True, defaults={"aux_skip": 1.0}, sources={
    **SOURCES, "aux_skip": "DARTS- §3.2 and release (skip_beta 1, decay linear to 0)",
    "*": "DARTS- (Chu et al. 2021)"})
def darts_minus(**options) -> Strategy:
    """DARTS-: an auxiliary skip per edge, its weight decaying from 1 to 0 (Chu et al. 2021)."""
    return Strategy("darts-minus", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))
