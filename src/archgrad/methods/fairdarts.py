"""FairDARTS (Chu, Zhou, Zhang & Li, ECCV 2020): candidates that do not compete.

Each candidate's weight is an independent sigmoid of its logit (§3.2, the parameterization
``Sigmoid``), so a parameter-free op no longer gains its weight at the others' expense; the
zero-one loss w01 * L01, L01 = -1/N sum (sigma(a) - 0.5)^2 (eq. 5, w01 = 10, §4.1) pushes every
sigmoid to 0 or 1 (the addon ``zero_one``, which any strategy can take). The cell is derived by
the space's rule on the sigmoids (on NAS-Bench-201 the per-edge argmax); FairDARTS's threshold
(keep an op whose sigmoid exceeds 0.85, leaving a node a variable number of inputs) needs a
genotype the DARTS space does not hold, and is not built.
"""
from __future__ import annotations

from ..core.arch import Sigmoid
from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register
from .darts import SOURCES


@register("fairdarts", family="darts", adam=True, defaults={"zero_one": 10.0}, sources={
    **SOURCES, "zero_one": "FairDARTS eq. 5 and §4.1: w01 = 10",
    "arch": "FairDARTS §4.1 (DARTS's Adam settings); sigmoid of 1e-3*randn logits",
    "*": "FairDARTS (Chu et al. 2020)"})
def fairdarts(**options) -> Strategy:
    """FairDARTS: independent sigmoid weights and the zero-one loss (Chu et al. 2020)."""
    update = adam_update(options, Sigmoid)
    return Strategy("fairdarts", Estimator(), update, bilevel=True, arch_first=True,
                    **common(options))
