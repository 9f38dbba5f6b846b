"""Sampling architectures from per-edge categorical distributions.

Samples are drawn on the CPU from the strategy's own generator, so a run's samples do not depend
on the device and are restored exactly on resume.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .arch import ChoiceGroup, Mix


def gumbel(shape, generator: torch.Generator, dtype=torch.float32) -> Tensor:
    """Standard Gumbel noise G = -log(-log U), U ~ Uniform(0, 1) (clamped away from 0 and 1)."""
    u = torch.rand(shape, generator=generator, dtype=dtype).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def sample_indices(probs: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, list[int]]:
    """One candidate per edge, independently, from each row's categorical distribution."""
    return {k: torch.multinomial(p.detach().float().cpu().clamp_min(0), 1, generator=generator)
            .squeeze(1).tolist() for k, p in probs.items()}


def uniform_indices(alive: Mapping[str, Tensor], generator: torch.Generator
                    ) -> dict[str, list[int]]:
    """One alive candidate per edge, uniformly."""
    return {k: torch.multinomial(a.detach().float().cpu(), 1, generator=generator).squeeze(1)
            .tolist() for k, a in alive.items()}


def onehot(indices: Mapping[str, list[int]], groups: Mapping[str, ChoiceGroup], device,
           dtype=torch.float32, leaf: bool = False) -> Mix:
    """The one-hot mix of a sampled architecture; ``leaf``: its weights require grad, so that
    after a backward ``mix.weights[k].grad[e, j]`` is dL/da_e^j = <dL/dO_e, O_e^j> for the
    computed candidate j (AdvantageNAS eq. 7, NASP, XNAS)."""
    mix = Mix.onehot(indices, groups, device=device, dtype=dtype)
    # a sampled zero op is kept in 'active' so estimators see which candidate was drawn; the
    # mixed op skips computing it
    mix.active = {k: [(i,) if i >= 0 else () for i in idx] for k, idx in indices.items()}
    if leaf:
        for w in mix.weights.values():
            w.requires_grad_(True)
    return mix


def indices_to_tensor(indices: Mapping[str, list[int]], device=None) -> dict[str, Tensor]:
    return {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in indices.items()}


def score_grads(arch, indices: Mapping[str, list[int]], coef: Mapping[str, Tensor]
                ) -> dict[str, Tensor]:
    """grad_theta sum_e coef[e] * log p_e(k_e): the score-function direction of a sampled
    architecture, with a per-edge coefficient, for any parameterization (softmax logits give
    coef[e] * (onehot(k_e) - p_e))."""
    lp = arch.log_probs()
    labels = list(indices)
    total = 0.0
    for k in labels:
        idx = torch.as_tensor(indices[k], device=lp[k].device).view(-1, 1)
        total = total + (lp[k].gather(1, idx).squeeze(1) * coef[k].to(lp[k].dtype)).sum()
    grads = torch.autograd.grad(total, [arch.theta[k] for k in labels], allow_unused=True)
    return {k: (g if g is not None else torch.zeros_like(arch.theta[k]))
            for k, g in zip(labels, grads)}
