"""Update rules: how the architecture parameters move (``ArchUpdate``: Adam on logits, none), and
the shared weights' optimizer with its cosine schedule (``WeightOptim``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import ArchgradError
from .arch import ArchParams, Parameterization, Softmax

if TYPE_CHECKING:
    from .estimator import StepContext


# --------------------------------------------------------------------------------------------
# Architecture update rules
# --------------------------------------------------------------------------------------------
class ArchUpdate:
    """Applies a gradient to the architecture parameters. Owns their parameterization."""

    parameterization: Parameterization = Softmax()

    def bind(self, arch: ArchParams) -> None:
        self.arch = arch

    def step(self, grads: dict[str, Tensor], ctx: StepContext | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def settings(self) -> dict[str, Any]:
        """The update rule's hyperparameters (for the table of defaults)."""
        return {}


ARCH_LR_SCHEDULES = ("constant", "cosine")


class AdamUpdate(ArchUpdate):
    """Adam on logits (DARTS: lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).

    ``grad_clip``: the architecture gradient's norm is clipped first (P-DARTS 5, SNAS 10,
    AdvantageNAS 1). ``lr_schedule="cosine"``: the learning rate is cosine-annealed to 0 per
    epoch over the epochs with architecture steps (AdvantageNAS's official code)."""

    def __init__(self, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3,
                 parameterization: Parameterization | None = None, *,
                 grad_clip: float | None = None, lr_schedule: str = "constant",
                 eps: float = 1e-8):
        if lr_schedule not in ARCH_LR_SCHEDULES:
            raise ArchgradError(f"arch_lr_schedule must be one of "
                                f"{', '.join(ARCH_LR_SCHEDULES)}, got {lr_schedule!r}")
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.grad_clip, self.lr_schedule, self.eps = grad_clip, lr_schedule, eps
        self.parameterization = parameterization or Softmax()

    def bind(self, arch):
        super().bind(arch)
        self.opt = torch.optim.Adam(arch.parameters(), lr=self.lr, betas=self.betas,
                                    weight_decay=self.weight_decay, eps=self.eps)

    def lr_at(self, ctx: StepContext | None) -> float:
        if self.lr_schedule == "cosine" and ctx is not None:
            e, n = ctx.arch_epoch
            return cosine(self.lr, 0.0, e, n)
        return self.lr

    def step(self, grads, ctx=None):
        params = []
        for k, g in grads.items():
            p = self.arch.param(k)
            p.grad = g.to(p.dtype)
            params.append(p)
        if self.grad_clip:
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        lr = self.lr_at(ctx)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {}

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, state):
        self.opt.load_state_dict(state)

    def settings(self):
        return {"arch_optimizer": "adam", "arch_lr": self.lr, "arch_betas": self.betas,
                "arch_weight_decay": self.weight_decay, "arch_grad_clip": self.grad_clip,
                "arch_lr_schedule": self.lr_schedule,
                "init": _init_text(self.parameterization)}


def _init_text(par: Parameterization) -> str:
    scale = getattr(par, "init_scale", None)
    if par.name == "simplex":
        return "uniform" if not scale else f"uniform x exp({scale:g} N(0,1))"
    if par.name == "box":
        return f"0.5 + {scale:g} N(0,1)"
    return "uniform" if not scale else f"{scale:g} N(0,1)"


class NoUpdate(ArchUpdate):
    """Leaves the architecture parameters as they are (random search with weight sharing)."""

    def step(self, grads, ctx=None):
        return {}

    def settings(self):
        return {"arch_optimizer": "none"}


# --------------------------------------------------------------------------------------------
# Weight optimizer settings (shared; strategies change defaults where their paper does)
# --------------------------------------------------------------------------------------------
def cosine(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``lr`` at epoch 0 towards ``lr_min`` (a pure function of the epoch)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2


@dataclass
class WeightOptim:
    """SGD on the shared weights, learning rate cosine-annealed per epoch (DARTS defaults).
    ``optimizer="adam"`` uses Adam instead (NNI's default, with lr 1e-3)."""

    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    nesterov: bool = False
    optimizer: str = "sgd"
    #: epochs the cosine spans (None: the search's); GAEA's release runs 25 of a 50-epoch
    #: schedule
    lr_epochs: int | None = None

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ArchgradError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    def lr_at(self, epoch: int, epochs: int) -> float:
        """Cosine annealing from ``lr`` to ``lr_min`` over the epochs (a pure function)."""
        return cosine(self.lr, self.lr_min, epoch, self.lr_epochs or epochs)

    def make(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay, nesterov=self.nesterov)

    def settings(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "lr": self.lr, "lr_min": self.lr_min,
                "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "grad_clip": self.grad_clip,
                "lr_epochs": self.lr_epochs}
