"""Batch-norm statistics under weight sharing.

A supernet's BN running statistics average over every architecture it was trained with, which can
be far from those of one derived architecture (most of all after sampled training). One-shot NAS
evaluation therefore recalibrates them for the architecture at hand with forward passes over
training batches (no weights change) before evaluating it.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn


def bn_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that keep BN running statistics (torch's batch norms and fused ones)."""
    return [m for m in model.modules()
            if getattr(m, "running_mean", None) is not None and hasattr(m, "momentum")]


@contextmanager
def recalibrated(model: nn.Module, mix, batches: Iterable):
    """Within the block, ``model``'s BN statistics are those of ``mix`` on ``batches`` (a
    cumulative average); the original statistics are restored afterwards."""
    mods = bn_modules(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in mods]
    calls = {m: 0 for m in mods}

    def cumulative(m, _inputs):
        # a cumulative average over every call: over the batches, and over the time steps and
        # nodes of a recurrent cell whose one batch norm runs many times a batch (a momentum of
        # 1/(batch+1) kept only each batch's last call)
        calls[m] += 1
        m.momentum = 1.0 / calls[m]

    hooks = [m.register_forward_pre_hook(cumulative) for m in mods]
    was = model.training
    try:
        # only the batch norms in training mode: no dropout (a recurrent cell's masks would
        # bias the statistics)
        model.eval()
        for m in mods:
            m.train()
        with torch.no_grad():
            for x, _ in batches:
                model(x, mix)
        for h in hooks:
            h.remove()
        model.train(was)
        yield model
    finally:
        for h in hooks:
            h.remove()
        for m, (rm, rv, mom) in zip(mods, saved):
            m.running_mean.copy_(rm)
            m.running_var.copy_(rv)
            m.momentum = mom
        model.train(was)


@contextmanager
def batch_statistics(model: nn.Module):
    """Within the block, batch norms normalise with each batch's own statistics, as in
    training, and leave their running statistics untouched (momentum 0). How a supernet that
    trains a different sampled network every step is evaluated: its running statistics average
    over many networks and fit none of them."""
    mods = bn_modules(model)
    saved = [(m.momentum, m.training) for m in mods]
    try:
        for m in mods:
            m.momentum = 0.0
            m.train()
        yield model
    finally:
        for m, (mom, tr) in zip(mods, saved):
            m.momentum = mom
            m.train(tr)
