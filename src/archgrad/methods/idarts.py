"""I-DARTS (Jiang, Hu, Xiao, Zhang & Zhu, EMNLP 2019): one softmax over all incoming (edge, op)
pairs of each node instead of a softmax per edge, so that edges from different nodes compete
directly; the space's derivation then takes each node's strongest edges from that node-level
distribution. DARTS's optimisers and schedule otherwise."""
from __future__ import annotations

from ..arch import NodeSoftmax
from ..strategy import AdamUpdate, Estimator, Strategy
from . import common, register


@register("idarts", family="darts")
def idarts(arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, init_scale=1e-3,
           **options) -> Strategy:
    """I-DARTS: a node-level softmax over all incoming (edge, op) pairs."""
    update = AdamUpdate(arch_lr, arch_betas, arch_weight_decay, NodeSoftmax(init_scale))
    return Strategy("idarts", Estimator(), update, bilevel=True, arch_first=True,
                    **common(options))
