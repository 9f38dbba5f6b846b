"""SDARTS (Chen & Hsieh, ICML 2020): smoothing DARTS by perturbing the architecture.

The weights train under A + delta (the addon ``perturb``): SDARTS-RS draws delta uniformly in
the L-inf ball of radius eps (eq. 4), SDARTS-ADV finds it by PGD on the training loss (eq. 5,
7 steps); eps grows linearly from 0.03 to 0.3 over the search (the release's
``epsilon_alpha``). The architecture steps as first-order DARTS on the unperturbed A. Any
relaxed strategy takes the perturbation (``--set perturb=random``).
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES

_SRC = {**SOURCES, "perturb": "SDARTS §3 (RS eq. 4, ADV eq. 5)",
        "perturb_eps": "SDARTS release train_search.py: epsilon_alpha 0.03 + (0.3 - 0.03) "
                       "epoch / epochs", "perturb_eps_min": "SDARTS release (0.03)",
        "perturb_steps": "SDARTS release Linf_PGD_alpha: 7 steps of 2 eps / 7, random start",
        "*": "SDARTS (Chen & Hsieh 2020)"}


@register("sdarts-rs", family="darts", adam=True, defaults={"perturb": "random"}, sources=_SRC)
def sdarts_rs(**options) -> Strategy:
    """SDARTS-RS: weights trained at a randomly perturbed architecture."""
    return Strategy("sdarts-rs", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))


@register("sdarts-adv", family="darts", adam=True, defaults={"perturb": "adversarial"},
          sources=_SRC)
def sdarts_adv(**options) -> Strategy:
    """SDARTS-ADV: weights trained at an adversarially (PGD) perturbed architecture."""
    return Strategy("sdarts-adv", Estimator(), adam_update(options), bilevel=True,
                    arch_first=True, **common(options))
