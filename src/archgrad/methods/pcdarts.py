"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation.

Each mixed op processes 1/K of its input's channels (K = 4; §3.1) and the rest bypass it; the
two parts are concatenated and channel-shuffled. As the official ``model_search.py``, the
processed channels are the first C/K, fixed: every output channel carries the same input channel
or op output from step to step (drawing a fresh random subset per forward moves the bypassed
channels around and the supernet does not learn; see the fidelity tests). Partial channels are a
supernet option (``partial_channels``) that any strategy can use; ``pcdarts`` turns it on where
the space supports it. Edge normalisation (§3.2): a second set of architecture parameters beta
weights each node's incoming edges through a softmax over them, and the space's derivation
weighs edges by beta times alpha.

Defaults of the official ``train_search.py``: batch 256, weights SGD lr 0.1 cosine to 0.001,
momentum 0.9, weight decay 3e-4, clip 5; architecture Adam lr 6e-4, betas (0.5, 0.999), weight
decay 1e-3; 50 epochs with the architecture frozen for the first 15 (``warmup_epochs=0.3``, the
same share of a shorter search).
"""
from __future__ import annotations

from ..core.strategy import Estimator, Strategy
from . import adam_update, common, register

DEFAULTS = {"batch_size": 256, "epochs": 50, "lr": 0.1, "lr_min": 1e-3, "warmup_epochs": 0.3,
            "arch_lr": 6e-4}
SOURCES = {"weights": "PC-DARTS train_search.py and V100_python1.0/train_search.py as stored "
           "(commits 8c434ef, 50b51a9: lr 0.1, learning_rate_min 0.001, momentum 0.9, weight "
           "decay 3e-4, clip 5)",
           "arch": "PC-DARTS train_search.py (arch_learning_rate 6e-4, weight decay 1e-3); "
                   "architect.py (betas (0.5, 0.999)); model_search.py (1e-3*randn)",
           "schedule": "PC-DARTS train_search.py (batch 256, 50 epochs, architecture from "
                       "epoch 15: 0.3 of the epochs)",
           "partial_channels": "PC-DARTS §3.1 (K = 4); model_search.py",
           "edge_weights": "PC-DARTS §3.2 (edge normalisation)",
           "*": "PC-DARTS (Xu et al. 2020)"}


@register("pcdarts", family="darts", adam=True, defaults=DEFAULTS, sources=SOURCES,
          help={"partial_channels": "K: mixed ops process 1/K of the channels"})
def pcdarts(partial_channels: int = 4, **options) -> Strategy:
    """PC-DARTS: partial channel connections (1/K of the channels per mixed op) and edge
    normalisation."""
    update = adam_update(options)
    return Strategy("pcdarts", Estimator(), update, bilevel=True, arch_first=True,
                    edge_weights=True, space_defaults={"partial_channels": partial_channels},
                    **common(options))
