"""Strategies = estimator + architecture update rule + schedule.

* An :class:`Estimator` turns the architecture parameters into the mixing weights of a forward
  pass and estimates the gradient of the architecture parameters (pathwise through a relaxation,
  by a score function, from the gradient of the mixing weights ...).
* An :class:`ArchUpdate` owns the parameterization (logits, simplex ...) and applies a gradient
  (Adam, exponentiated gradient, proximal step ...).
* :class:`Strategy` alternates weight and architecture steps (bi-level on the two halves of the
  training data, or single level on the same batch), with optional warm-up epochs.

A strategy never imports a space: it sees a supernet (``forward(x, mix)``), the space's
:class:`~archgrad.arch.ChoiceGroup` list and a loss function.

The estimator and the update rules live in ``estimator`` and ``updates``; their names are
imported here too, so that ``archgrad.strategy`` holds the whole strategy API.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..engine.runtime import keep_freed_memory
from ..errors import ArchgradError
from .arch import ArchParams, ChoiceGroup
from .estimator import ArchStepResult, Estimator, StepContext, accuracy, output_metrics
from .updates import ARCH_LR_SCHEDULES, AdamUpdate, ArchUpdate, NoUpdate, WeightOptim, cosine

__all__ = ["ARCH_LR_SCHEDULES", "AdamUpdate", "ArchStepResult", "ArchUpdate", "DATA_SPLITS",
           "DERIVE_MODES", "Estimator", "NoUpdate", "Stage", "StepContext", "Strategy",
           "WeightOptim", "accuracy", "cosine", "output_metrics"]


@dataclass
class Stage:
    """A part of the search with its own supernet (P-DARTS's progressive stages)."""

    start: int
    end: int
    space: dict = field(default_factory=dict)   # supernet options for this stage
    keep: int | None = None                     # candidates per edge kept when it begins
    warmup: int = 0                             # weights-only epochs at its start


#: "best-valid": the argmax genotype of the epoch whose supernet scored best on the validation
#: split (the GAEA release's bi-level searches, train_search.py ``best_genotype``)
#: "perturbation": DARTS-PT's selection on the final supernet (archgrad.selection)
DERIVE_MODES = ("argmax", "process-best", "process-best-mean", "best-valid", "perturbation")


#: "all-resampled": single level over all of the training data, the architecture stepping on
#: a batch of its own from a second shuffled pass (the GAEA release's ERM search)
DATA_SPLITS = ("halves", "all", "all-resampled")


# --------------------------------------------------------------------------------------------
class Strategy(nn.Module):
    """One search strategy: ``estimator`` + ``update`` + a schedule.

    ``bilevel``: the architecture steps on the validation half, the weights on the training
    half; otherwise both on the same batch (single level). ``arch_first``: order of the two
    steps in an iteration (DARTS's code steps the architecture first). ``warmup_epochs``: epochs
    at the start that train the weights only, with the architecture frozen. ``arch_every``: an
    architecture step every this many iterations (ProxylessNAS: 5). ``data_split``: "halves"
    (weights on the first half of the training data, architecture on the second, DARTS's
    ``train_portion=0.5``) or "all" (every training example trains the weights; the single-level
    methods' default, evaluated on the test split). ``batch_size`` / ``epochs``: the search's
    defaults where the user gives none.
    """

    def __init__(self, name: str, estimator: Estimator, update: ArchUpdate, *,
                 bilevel: bool = True, arch_first: bool = True, warmup_epochs: int = 0,
                 weights: WeightOptim | None = None, derive: str = "argmax",
                 derive_options: dict | None = None, description: str = "",
                 rank_candidates: int = 0, edge_weights: bool = False,
                 space_defaults: dict | None = None, arch_every: int = 1,
                 data_split: str | None = None, batch_size: int | None = None,
                 epochs: int | None = None, addons: Sequence[Any] = (),
                 pt_options: dict | None = None):
        super().__init__()
        if derive not in DERIVE_MODES:
            raise ArchgradError(f"derive must be one of {', '.join(DERIVE_MODES)}, got {derive!r}")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, (int, float)) \
                or not math.isfinite(warmup_epochs) or warmup_epochs < 0:
            raise ArchgradError(f"warmup_epochs must be a number >= 0, got {warmup_epochs!r}")
        if isinstance(warmup_epochs, float) and not warmup_epochs.is_integer() \
                and warmup_epochs >= 1:
            raise ArchgradError("warm-up is a number of epochs (an integer) or a fraction of "
                                f"the epochs below 1, got {warmup_epochs}")
        if isinstance(arch_every, bool) or not isinstance(arch_every, int) or arch_every < 1:
            raise ArchgradError(f"arch_every must be a positive integer, got {arch_every!r}")
        data_split = data_split or ("halves" if bilevel else "all")
        if data_split not in DATA_SPLITS:
            raise ArchgradError(f"data_split must be one of {', '.join(DATA_SPLITS)}, got "
                                f"{data_split!r}")
        if bilevel and data_split != "halves":
            raise ArchgradError(f"data_split='{data_split}' needs a single-level strategy: a "
                                f"bi-level one steps the architecture on held-out data")
        self.name = name
        self.estimator = estimator
        self.update = update
        #: parts any strategy can take (archgrad.addons): regularizers, perturbations ...
        self.addons = list(addons)
        for a in self.addons:
            a.check(self)
        self.bilevel, self.arch_first = bilevel, arch_first
        self.warmup_epochs = warmup_epochs
        self.arch_every = arch_every
        self.data_split = data_split
        self.default_batch_size, self.default_epochs = batch_size, epochs
        self.weights_cfg = weights or WeightOptim()
        self.derive_mode = derive
        #: DARTS-PT's settings where ``derive="perturbation"``
        self.pt_options = dict(pt_options or {})
        self.derive_options = dict(derive_options or {})
        #: > 0: the final architecture is the best of this many uniformly sampled ones, ranked by
        #: their shared-weight validation score (random search with weight sharing)
        self.rank_candidates = int(rank_candidates)
        #: how the ranked candidates are scored (random-ws's ``selection``)
        self.rank_selection = "li-talwalkar"
        #: learn per-edge weights normalised per node (PC-DARTS's edge normalisation)
        self.edge_weights = edge_weights
        #: supernet options this strategy is designed for, applied where the space accepts
        #: them and the user has not set them (PC-DARTS: partial_channels=4)
        self.space_defaults = dict(space_defaults or {})
        for a in self.addons:
            self.space_defaults.update({k: v for k, v in a.space_defaults.items()
                                        if k not in self.space_defaults})
        self.description = description
        self.generator = torch.Generator()
        #: genotype key -> [reward sum, count, best reward] of the sampled architectures
        self._seen: dict[str, list[float]] = {}
        #: (sample, reward) of the steps since ``seen`` was last read: rewards stay tensors
        #: until the epoch's end (no host synchronisation inside a step)
        self._pending: list = []
        self.arch: ArchParams | None = None

    # -- set-up ------------------------------------------------------------------------------
    @property
    def needs_costs(self) -> bool:
        """Whether the estimator needs the space's per-candidate resource costs."""
        return bool(getattr(self.estimator, "needs_costs", False))

    @property
    def final_derive(self) -> str:
        if self.rank_candidates:
            return "rank-random" if self.rank_selection == "li-talwalkar" else \
                f"rank-random ({self.rank_selection})"
        return self.derive_mode

    def setup(self, groups: Sequence[ChoiceGroup], model: nn.Module, seed: int,
              device: torch.device | str = "cpu", costs: dict | None = None) -> None:
        """Create the architecture parameters and attach the supernet."""
        self.seed = seed
        self.generator.manual_seed(seed)
        if torch.device(device).type == "cpu":  # activations reused, not page-faulted each step
            keep_freed_memory()
        if hasattr(self.estimator, "bind"):
            self.estimator.bind(groups, costs, device)
        gen = torch.Generator().manual_seed(seed)
        self.arch = ArchParams(groups, self.update.parameterization, gen,
                               edge_weights=self.edge_weights).to(device)
        self.update.bind(self.arch)
        self.attach(model)

    def attach(self, model: nn.Module) -> None:
        """Train this supernet's weights (a new one at each progressive stage)."""
        self.__dict__["model"] = model  # not a submodule: checkpoints save it on its own
        self.weight_params = [p for p in model.parameters() if p.requires_grad]
        self.weight_opt = self.weights_cfg.make(self.weight_params) if self.weight_params else None

    # -- stages ------------------------------------------------------------------------------
    def bind_space(self, space_cls, space_options: dict | None = None) -> "Strategy":
        """The space a search runs this strategy on and the options given for it (what a
        progressive strategy's stages depend on)."""
        self._space_cls, self._space_options = space_cls, dict(space_options or {})
        self._stages_epochs = None
        return self

    def plan(self, epochs: int, space_cls=None, space_options=None) -> list[Stage]:
        """The search's stages; a single one unless the strategy is progressive."""
        return [Stage(0, epochs, {}, None, min(self.warmup(epochs), epochs))]

    @property
    def min_epochs(self) -> int:
        """The fewest epochs a search with this strategy can have."""
        return 1

    def first_arch_epoch(self, epochs: int) -> int:
        """The first epoch with architecture steps."""
        return min(st.start + st.warmup for st in self.stages_for(epochs))

    def stage_of(self, epoch: int, epochs: int) -> tuple[int, Stage]:
        for i, st in enumerate(self.stages_for(epochs)):
            if st.start <= epoch < st.end:
                return i, st
        return len(self._stages) - 1, self._stages[-1]

    def stages_for(self, epochs: int) -> list[Stage]:
        if getattr(self, "_stages_epochs", None) != epochs:
            self._stages = self.plan(epochs, getattr(self, "_space_cls", None),
                                     getattr(self, "_space_options", None))
            self._stages_epochs = epochs
        return self._stages

    def begin_stage(self, index: int, stage: Stage, model: nn.Module) -> dict:
        """Called when a later stage starts: attach its supernet (progressive strategies also
        prune candidates and re-initialise the architecture here)."""
        self.attach(model)
        return {}

    def set_lr(self, epoch: int, epochs: int) -> float:
        self._lr = self.weights_cfg.lr_at(epoch, epochs)
        for g in (self.weight_opt.param_groups if self.weight_opt else []):
            g["lr"] = self._lr
        return self._lr

    @property
    def lr(self) -> float:
        return getattr(self, "_lr", self.weights_cfg.lr)

    def warmup(self, epochs: int) -> int:
        """Warm-up epochs of a search of ``epochs`` epochs (a fraction below 1 is a share)."""
        w = self.warmup_epochs
        return int(round(w * epochs)) if isinstance(w, float) and w < 1 else int(w)

    # -- one iteration -------------------------------------------------------------------------
    def step(self, train_batch, valid_batch, *, loss_fn, epoch, epochs, step, steps_per_epoch,
             arch_loss_fn=None) -> dict[str, Any]:
        """One iteration. ``arch_loss_fn``: the architecture step's loss where it differs from
        the weights' (DARTS's recurrent search regularises the weights' loss only). A batch may
        carry ``lr_scale`` (a shorter BPTT window: DARTS scales the learning rate with it)."""
        stages = self.stages_for(epochs)
        si, stage = self.stage_of(epoch, epochs)
        for a in self.addons:
            a.begin_step(self, epoch, epochs)
        arch_epoch = epoch >= stage.start + stage.warmup
        arch_on = arch_epoch and (step + 1) % self.arch_every == 0
        # iterations with architecture steps in the search and the index of this one (XNAS's T
        # and t; the cosine schedule of the architecture's learning rate)
        total = max(sum(st.end - st.start - st.warmup for st in stages) * steps_per_epoch, 1)
        done = sum(max(min(epoch, st.end) - st.start - st.warmup, 0) for st in stages[:si + 1])
        index = done * steps_per_epoch + step

        scale = float(getattr(train_batch[0], "lr_scale", 1.0)) if isinstance(
            train_batch, (tuple, list)) else 1.0
        lr = self.lr * scale

        def ctx(batch, fn):
            return StepContext(self.model, self.arch, fn, batch, train_batch,
                               self.weight_params, lr, epoch, epochs, step, steps_per_epoch,
                               self.generator, total, index, self.weight_opt, self.weights_cfg,
                               amp=self.amp, scaler=self.scaler, warmup=not arch_epoch,
                               valid_batch=valid_batch if self.bilevel else None)

        afn = arch_loss_fn or loss_fn
        stats: dict[str, Any] = {}
        if scale != 1.0 and self.weight_opt is not None:
            for g in self.weight_opt.param_groups:
                g["lr"] = lr
        try:
            own_batch = self.bilevel or self.data_split == "all-resampled"
            if not own_batch and arch_on and self.estimator.joint_ok and \
                    not any(a.own_weight_step for a in self.addons):
                stats.update(self.joint_step(ctx(train_batch, loss_fn)))
                return stats
            arch_batch = valid_batch if own_batch and valid_batch is not None \
                else train_batch
            if arch_on and self.arch_first:
                stats.update(self.arch_step(ctx(arch_batch, afn)))
            stats.update(self.weight_step(ctx(train_batch, loss_fn)))
            if arch_on and not self.arch_first:
                stats.update(self.arch_step(ctx(arch_batch, afn)))
            return stats
        finally:
            if scale != 1.0 and self.weight_opt is not None:
                for g in self.weight_opt.param_groups:
                    g["lr"] = self.lr

    #: a data-parallel run's context (archgrad.dist), set by the loop: gradients are averaged
    #: over the ranks before every update; None in one process
    dist = None
    #: mixed precision, set by the loop (--amp): the autocast dtype and, for fp16, the loss
    #: scaler of the weights' loss
    amp = None
    scaler = None

    def arch_step(self, ctx: StepContext) -> dict[str, Any]:
        res = self.estimator.arch_step(ctx)
        if self.dist is not None:
            res.grads = self.dist.average_grads(res.grads)
        self._add_regularizers(ctx, res.grads)
        stats = dict(res.stats)
        stats.update(self.update.step(res.grads, ctx))
        self._track(res)
        stats["_grads"] = res.grads
        return stats

    def weight_step(self, ctx: StepContext) -> dict[str, Any]:
        if not self.weight_params:  # fixed weights (the toy teacher-student task)
            return {}
        mix = self.estimator.weight_mix(ctx)
        for a in self.addons:
            mix = a.weight_mix(ctx, mix)
        for a in self.addons:
            a.before_weight(ctx, self, mix)
        out, loss = ctx.forward(mix, ctx.train_batch)
        self.weight_opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        for a in self.addons:
            a.after_backward(ctx, self, mix)
        norm = self._clip_and_step()
        return {"train_loss": loss.detach(), "train_acc": accuracy(out, ctx.train_batch[1]),
                "_wnorm": norm, **output_metrics(out, "train")}

    def joint_step(self, ctx: StepContext) -> dict[str, Any]:
        """Single level in one backward: weights and architecture from the same loss."""
        mix, record = self.estimator.arch_mix(ctx)
        out, loss = ctx.forward(mix)
        targets = self.estimator.grad_targets(ctx, mix, record)
        n = len(self.weight_params)
        # fp16: the weights' gradients stay scaled (_clip_and_step unscales them)
        gs = ctx.grad(loss, self.weight_params + targets, scaled=n)
        for p, g in zip(self.weight_params, gs[:n]):
            p.grad = g
        grads = self.estimator.arch_grads(ctx, mix, record, gs[n:], loss)
        if self.dist is not None:
            grads = self.dist.average_grads(grads)
        self._add_regularizers(ctx, grads)
        stats = {"train_loss": loss.detach(), "train_acc": accuracy(out, ctx.batch[1]),
                 "_grads": grads, **output_metrics(out, "train")}
        if self.weight_params:
            stats["_wnorm"] = self._clip_and_step()
        stats.update(self.update.step(grads, ctx))
        sample = self.estimator.sample_of(record)
        self._track(ArchStepResult(grads, {}, [(sample, -loss.detach())] if sample else []))
        return stats

    def end_epoch(self, task, history: list[dict], record: dict) -> dict[str, Any]:
        """The parts' figures of an epoch (an eigenvalue; ``stopped`` ends the search)."""
        out: dict[str, Any] = {}
        for a in self.addons:
            out.update(a.end_epoch(self, task, history, {**record, **out}))
        return out

    def _add_regularizers(self, ctx: StepContext, grads: dict[str, Tensor]) -> None:
        """Add the gradients of the addons' architecture losses (the same on every rank)."""
        for a in self.addons:
            for k, g in a.arch_grads(ctx, self.arch).items():
                grads[k] = g if k not in grads else grads[k] + g.to(grads[k].dtype)

    def _clip_and_step(self) -> Tensor:
        """Clip (when set) and step the weights; returns their gradient norm (a tensor: the
        divergence check reads it at the end of the epoch)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.weight_opt)
        if self.dist is not None:
            grads = [p.grad for p in self.weight_params if p.grad is not None]
            self.dist.average_(grads)
        norm = nn.utils.clip_grad_norm_(self.weight_params, self.weights_cfg.grad_clip or
                                        math.inf)
        if self.scaler is not None:  # fp16: a step with an overflow is skipped and the
            self.scaler.step(self.weight_opt)  # scale lowered, as GradScaler does; not a
            self.scaler.update()  # divergence
            return torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm)).detach()
        self.weight_opt.step()
        return norm.detach()

    # -- derivation ----------------------------------------------------------------------------
    def _track(self, res: ArchStepResult) -> None:
        self._pending.extend(res.samples)

    @property
    def seen(self) -> dict[str, list[float]]:
        """Genotype key -> [reward sum, count, best reward] of the sampled architectures
        (reading it turns the pending rewards into numbers; under torchrun every rank must read
        it at the same point, as the loop's derivation at every epoch's end does)."""
        self._flush()
        return self._seen

    def _flush(self, collective: bool = True) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        r = torch.stack([w.detach().double().reshape(()).cpu() if torch.is_tensor(w)
                         else torch.tensor(float(w), dtype=torch.float64)
                         for _, w in pending])
        if self.dist is not None and collective:  # the reward of the whole batch
            r = r.to(self.dist.device)
            self.dist.average_([r])
        for (sample, _), reward in zip(pending, r.tolist()):
            key = _key({k: v.tolist() if torch.is_tensor(v) else v for k, v in sample.items()})
            s = self._seen.get(key)
            if s is None:
                self._seen[key] = [reward, 1, reward]
            else:
                s[0] += reward
                s[1] += 1
                s[2] = max(s[2], reward)

    @torch.no_grad()
    def derive(self, space):
        """The space's derivation of the current distribution (with edge weights if any), with
        this strategy's derivation options where the space's rule takes them."""
        import inspect
        self._flush()  # every rank derives at every epoch's end: the rewards' one reduction
        accepted = inspect.signature(space.derive).parameters
        opts = {k: v for k, v in self.derive_options.items() if k in accepted}
        if self.arch.has_edge_weights:
            opts["edge_weights"] = self.arch.edge_weights()
        return space.derive(self.arch.probs_detached(), **opts)

    def process_best(self, mode: str | None = None) -> dict[str, list[int]] | None:
        """The sampled architecture with the best validation reward: its single best minibatch
        ("process-best", AdvantageNAS's official code) or its mean over every time it was
        sampled ("process-best-mean"; ties go to the more often sampled)."""
        if not self.seen:
            return None
        mode = mode or self.derive_mode
        if mode == "process-best-mean":
            key = max(self.seen, key=lambda k: (self.seen[k][0] / self.seen[k][1],
                                                self.seen[k][1]))
        else:
            key = max(self.seen, key=lambda k: self.seen[k][2])
        return _unkey(key)

    # -- state ---------------------------------------------------------------------------------
    def get_extra_state(self):
        self._flush(collective=False)  # empty here: the epoch's derivation has read them
        return {"generator": self.generator.get_state(), "seen": self._seen,
                "update": self.update.state_dict(),
                "weight_opt": self.weight_opt.state_dict() if getattr(self, "weight_opt", None)
                else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "addons": [a.state_dict() for a in self.addons]}

    def set_extra_state(self, state):
        self.generator.set_state(state["generator"])
        self._seen = {k: list(v) for k, v in state["seen"].items()}
        self._pending = []
        self.update.load_state_dict(state["update"])
        if state.get("weight_opt") is not None:
            self.weight_opt.load_state_dict(state["weight_opt"])
        if state.get("scaler") is not None and self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        for a, st in zip(self.addons, state.get("addons", [])):
            a.load_state_dict(st)

    def describe(self) -> dict:
        return {"name": self.name, "estimator": type(self.estimator).__name__,
                "update": type(self.update).__name__,
                "parameterization": self.update.parameterization.name,
                "bilevel": self.bilevel, "arch_first": self.arch_first,
                "warmup_epochs": self.warmup_epochs, "derive": self.final_derive,
                "dense": self.estimator.dense, "data_split": self.data_split,
                "arch_every": self.arch_every, "eval": self.estimator.describe_eval(),
                "addons": [a.name for a in self.addons]}

    def settings(self) -> dict[str, Any]:
        """Every setting this strategy runs with (weights, architecture, schedule, estimator),
        for the table of defaults and its test."""
        out: dict[str, Any] = {"batch_size": self.default_batch_size,
                               "epochs": self.default_epochs}
        out.update(self.weights_cfg.settings())
        out.update(self.update.settings())
        out.update({"bilevel": self.bilevel, "data_split": self.data_split,
                    "warmup_epochs": self.warmup_epochs, "arch_every": self.arch_every,
                    "arch_first": self.arch_first, "derive": self.final_derive})
        out.update({k: v for k, v in self.derive_options.items()})
        if self.derive_mode == "perturbation":
            out.update(self.pt_options)
        if self.edge_weights:
            out["edge_weights"] = True
        out.update(self.space_defaults)
        out.update(self.estimator.settings())
        for a in self.addons:
            out.update(a.settings())
        return out


def _key(sample: Mapping[str, Sequence[int]]) -> str:
    return ";".join(f"{k}:{','.join(map(str, v))}" for k, v in sorted(sample.items()))


def _unkey(key: str) -> dict[str, list[int]]:
    out = {}
    for part in key.split(";"):
        k, v = part.split(":")
        out[k] = [int(i) for i in v.split(",")] if v else []
    return out
