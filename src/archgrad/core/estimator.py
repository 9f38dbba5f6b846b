"""What an estimator sees during a step (``StepContext``) and what it is: ``Estimator`` turns the
architecture parameters into a forward pass's mixing weights and estimates their gradient."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .arch import ArchParams, Mix
from .updates import WeightOptim


# --------------------------------------------------------------------------------------------
# What an estimator sees during a step
# --------------------------------------------------------------------------------------------
@dataclass
class StepContext:
    model: nn.Module
    arch: ArchParams
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batch: tuple[Tensor, Tensor]
    train_batch: tuple[Tensor, Tensor]
    weights: list[nn.Parameter]
    lr: float
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    generator: torch.Generator
    #: iterations with architecture steps in the whole search (after warm-up) and the index of
    #: this one among them (0: not given, as in a context built by hand)
    total_arch_steps: int = 0
    arch_step_index: int = 0
    #: the weight optimizer and its settings (DARTS's unrolled step reads the momentum)
    weight_opt: torch.optim.Optimizer | None = None
    weights_cfg: WeightOptim | None = None
    #: mixed precision: the forward pass under autocast to this dtype (bf16 / fp16); the
    #: parameters, the architecture and their optimizers stay fp32
    amp: torch.dtype | None = None
    #: fp16: the weights' loss scaler (torch.amp.GradScaler); architecture gradients are taken
    #: of the scaled loss too, so that they do not underflow in fp16, and unscaled (:meth:`grad`)
    scaler: Any = None
    #: an iteration of a warm-up (weights only, the architecture frozen)
    warmup: bool = False
    #: the iteration's validation batch (bi-level; None in a single-level search), for the
    #: weight step's parts that compare both (OLES)
    valid_batch: tuple[Tensor, Tensor] | None = None

    def grad(self, loss: Tensor, inputs: Sequence[Tensor], scaled: int = 0
             ) -> list[Tensor | None]:
        """``torch.autograd.grad(loss, inputs)``; under fp16 of the scaled loss, the gradients of
        ``inputs[scaled:]`` unscaled (those of the first ``scaled`` inputs, the weights', stay
        scaled for the scaler's own unscale and overflow check). An unscaled gradient that
        overflowed is zero: GradScaler skips that step's weights, the architecture takes no
        gradient from it (a true divergence shows in the loss, which is not scaled)."""
        if self.scaler is None:
            return list(torch.autograd.grad(loss, inputs, allow_unused=True))
        gs = list(torch.autograd.grad(self.scaler.scale(loss), inputs, allow_unused=True))
        # the scale as a tensor on the loss's device (no host synchronisation); a power of
        # two, so unscaling in the gradients' own dtype is exact
        inv = self.scaler.scale(torch.ones((), device=loss.device)).reciprocal()
        for i in range(scaled, len(gs)):
            if gs[i] is not None:
                g = gs[i] * inv.to(gs[i].dtype)
                gs[i] = torch.where(torch.isfinite(g), g, torch.zeros_like(g))
        return gs

    @property
    def arch_epoch(self) -> tuple[int, int]:
        """(epochs with architecture steps done before this one, all of them); without the
        architecture-step schedule (``total_arch_steps`` 0), the search's (epoch, epochs)."""
        if self.total_arch_steps <= 0:
            return self.epoch, max(self.epochs, 1)
        spe = max(self.steps_per_epoch, 1)
        return self.arch_step_index // spe, max(-(-self.total_arch_steps // spe), 1)

    @property
    def progress(self) -> float:
        """Fraction of the search done, in [0, 1)."""
        return (self.epoch + self.step / max(self.steps_per_epoch, 1)) / max(self.epochs, 1)

    def forward(self, mix: Mix, batch: tuple[Tensor, Tensor] | None = None):
        x, y = batch if batch is not None else self.batch
        if self.amp is None:
            out = self.model(x, mix)
            return out, self.loss_fn(out, y)
        with torch.autocast(x.device.type, dtype=self.amp):
            out = self.model(x, mix)
            loss = self.loss_fn(out, y)
        return out, loss.float()


def accuracy(out, y: Tensor) -> Tensor | None:
    """Top-1 accuracy for classification outputs; None for other tasks."""
    if isinstance(out, Tensor) and out.dim() == 2 and y.dim() == 1 \
            and not y.is_floating_point():
        return (out.argmax(-1) == y).float().mean().detach()
    return None


def output_metrics(out, prefix: str) -> dict[str, Tensor]:
    """Figures a task's loss left on its output (a language model's log-likelihood)."""
    nll = getattr(out, "nll", None)
    return {f"{prefix}_nll": nll} if nll is not None else {}


@dataclass
class ArchStepResult:
    grads: dict[str, Tensor]
    stats: dict[str, Any] = field(default_factory=dict)
    #: discrete architectures evaluated in this step (per-label candidate indices) with their
    #: minibatch rewards (minus the validation loss), for "process best" derivation
    samples: list[tuple[dict[str, list[int]], float]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------
class Estimator(nn.Module):
    """Base estimator: a dense relaxation whose gradient flows pathwise into the parameters.

    Subclasses override :meth:`arch_mix` / :meth:`weight_mix` (how mixing weights are formed),
    :meth:`grad_targets` / :meth:`arch_grads` (what is differentiated and how it becomes a
    gradient of the parameters), or :meth:`arch_step` as a whole (several forwards), and
    :meth:`eval_mix` (the network under which the supernet is evaluated: the one it trains).
    """

    #: memory grows with the number of candidates (every candidate is computed)
    dense: bool = True
    #: the architecture step's mix may also train the weights in one backward (single level)
    joint_ok: bool = True
    #: how :meth:`eval_mix` evaluates the supernet, for the output
    eval_mode: str = "expected network (dense mix of the probabilities)"
    #: batch norm when evaluating: "running" statistics, or each batch's ("batch") where the
    #: running ones average over the many networks the strategy samples
    eval_bn: str = "running"

    def __init__(self):
        super().__init__()
        #: dropout on identity skip connections while training, set by the schedule (P-DARTS)
        self.skip_dropout: float = 0.0

    def describe_eval(self, has_bn: bool = True, batches: str | None = None) -> str:
        """How the supernet is evaluated, for the output: :attr:`eval_mode`, what one sample
        covers (``batches``, from the task) and, for a network with batch norms, which
        statistics they use."""
        text = self.eval_mode
        if self.eval_bn == "batch":
            text += f" ({batches})" if batches else ""
            text += ", BN with each batch's statistics as in training" if has_bn else ""
        return text

    def weight_mix(self, ctx: StepContext) -> Mix:
        with torch.no_grad():
            return Mix(ctx.arch.probs_detached(), ctx.arch.dense_active(),
                       ctx.arch.edge_weights(), skip_dropout=self.skip_dropout)

    def eval_mix(self, arch: ArchParams, generator: torch.Generator | None = None,
                 epoch: int = 0, epochs: int = 1) -> Mix | Callable[[], Mix]:
        """The mix under which the supernet is evaluated: a Mix, or a function drawing one per
        evaluation batch (sampling strategies: a Monte-Carlo estimate over the networks they
        train). ``generator`` draws those samples without touching the search's own."""
        with torch.no_grad():
            return Mix(arch.probs_detached(), arch.dense_active(), arch.edge_weights())

    def arch_mix(self, ctx: StepContext) -> tuple[Mix, Any]:
        return Mix(ctx.arch.probs(), ctx.arch.dense_active(), ctx.arch.edge_weights(),
                   skip_dropout=self.skip_dropout), None

    def grad_targets(self, ctx: StepContext, mix: Mix, record: Any) -> list[Tensor]:
        """Pathwise: every architecture parameter (theta, and beta with edge weights)."""
        return [ctx.arch.param(k) for k in ctx.arch.param_keys()]

    def arch_grads(self, ctx: StepContext, mix: Mix, record: Any,
                   target_grads: Sequence[Tensor | None], loss: Tensor) -> dict[str, Tensor]:
        return {k: (g if g is not None else torch.zeros_like(ctx.arch.param(k)))
                for k, g in zip(ctx.arch.param_keys(), target_grads)}

    def sample_of(self, record: Any) -> dict[str, list[int]] | None:
        return None

    def arch_step(self, ctx: StepContext) -> ArchStepResult:
        mix, record = self.arch_mix(ctx)
        out, loss = ctx.forward(mix)
        targets = self.grad_targets(ctx, mix, record)
        tg = ctx.grad(loss, targets) if targets else []
        grads = self.arch_grads(ctx, mix, record, tg, loss)
        sample = self.sample_of(record)
        return ArchStepResult(grads, {"arch_loss": loss.detach(),
                                      "arch_acc": accuracy(out, ctx.batch[1]),
                                      **output_metrics(out, "arch")},
                              [(sample, -loss.detach())] if sample is not None else [])

    def settings(self) -> dict[str, Any]:
        """The estimator's hyperparameters (for the table of defaults)."""
        return {}
