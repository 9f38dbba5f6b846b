"""I-DARTS (Jiang, Hu, Xiao, Zhang & Zhu, EMNLP 2019): one softmax over all incoming (edge, op)
pairs of each node instead of a softmax per edge, so that edges from different nodes compete
directly; the space's derivation then takes each node's strongest edges from that node-level
distribution. DARTS's optimisers and schedule otherwise."""
from __future__ import annotations

from ..core.arch import NodeSoftmax
from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register


@register("idarts", family="darts", adam=True, sources={
    "weights": "DARTS's (I-DARTS §3 keeps DARTS's search settings)",
    "arch": "DARTS's Adam; the node-level softmax of I-DARTS §2 (eq. 3)",
    "schedule": "DARTS's bi-level schedule", "*": "I-DARTS (Jiang et al. 2019)"})
def idarts(**options) -> Strategy:
    """I-DARTS: a node-level softmax over all incoming (edge, op) pairs."""
    update = adam_update(options, NodeSoftmax)
    return Strategy("idarts", Estimator(), update, bilevel=True, arch_first=True,
                    **common(options))
