"""Seeing and stopping DARTS's collapse (RobustDARTS, Zela et al., ICLR 2020).

* :func:`hessian_eigenvalue` — the dominant eigenvalue of the validation loss's Hessian with
  respect to the architecture parameters, by power iteration on exact Hessian-vector products
  (double backward), as RobustDARTS computes it each epoch (§4.1, its ``compute_hessian`` on a
  validation batch).
* :class:`EigenProbe` — records it per epoch (``hessian_every``; it costs 2 x ``iters``
  backward passes through the supernet).
* :class:`EarlyStop` — DARTS-ES (§5.1: stop when the eigenvalue's average over the last
  ``window`` epochs exceeds ``factor`` times its average over the window ``window`` epochs
  before, from epoch ``start``; return the architecture of ``window`` epochs before) and the
  skip-count rule (DARTS+, Liang et al. 2019: stop when the derived normal cell holds
  ``max_skips`` skip connections). The run records why and when it stopped; resume keeps it.

* :class:`AdaptiveRegularization` — DARTS-ADA (§5.2): where DARTS-ES stops, go back to the
  epoch it would return, raise the weights' L2 regularization and search on.

All are parts (``archgrad.addons``) any strategy takes: ``--set hessian_every=1``,
``--set early_stop=eigenvalue``, ``--set early_stop=skips``, ``--set early_stop=ada``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import ArchgradError
from .addons import Addon
from .arch import Mix


def hessian_vector(loss_of, thetas: list[torch.Tensor], v: list[torch.Tensor]
                   ) -> list[torch.Tensor]:
    """H v of the scalar ``loss_of()`` in ``thetas``, exactly: grad (grad L . v)."""
    with torch.enable_grad():
        loss = loss_of()
        g = torch.autograd.grad(loss, thetas, create_graph=True, allow_unused=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, v) if gi is not None)
        if not torch.is_tensor(dot) or not dot.requires_grad:
            return [torch.zeros_like(t) for t in thetas]
        hv = torch.autograd.grad(dot, thetas, allow_unused=True)
    return [h.detach() if h is not None else torch.zeros_like(t) for h, t in zip(hv, thetas)]


def power_iteration(hvp, shapes, generator: torch.Generator, iters: int = 20,
                    tol: float = 1e-4, device=None) -> float:
    """The eigenvalue of largest magnitude of the symmetric operator ``hvp`` (a list of tensors
    of ``shapes`` in, the same out): the Rayleigh quotient of the power iteration's vector,
    stopped when it changes by less than ``tol`` (relative)."""
    v = [torch.randn(s, generator=generator, dtype=torch.float64).to(device) for s in shapes]
    norm = torch.sqrt(sum((x ** 2).sum() for x in v))
    v = [x / norm for x in v]
    lam = 0.0
    for _ in range(iters):
        hv = [h.double() for h in hvp([x.float() for x in v])]
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))  # Rayleigh quotient, |v| = 1
        norm = torch.sqrt(sum((x ** 2).sum() for x in hv))
        if float(norm) == 0.0:
            return 0.0
        v = [x / norm for x in hv]
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            return new
        lam = new
    return lam


def hessian_eigenvalue(model, arch, loss_fn, batch, *, iters: int = 20, seed: int = 0,
                       amp=None) -> float:
    """The dominant eigenvalue of the Hessian of ``loss_fn(model(x, mix(A)), y)`` in the
    architecture parameters A (the relaxed mix of their probabilities, every candidate), on one
    ``batch``; batch norm as in training, its running statistics left as they were."""
    keys = [k for k in arch.param_keys()]
    thetas = [arch.param(k) for k in keys]
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    x, y = batch

    def loss_of():
        mix = Mix(arch.probs(), arch.dense_active(), arch.edge_weights())
        if amp is None:
            return loss_fn(model(x, mix), y)
        with torch.autocast(x.device.type if torch.is_tensor(x) else "cpu", dtype=amp):
            return loss_fn(model(x, mix), y).float()

    try:
        gen = torch.Generator().manual_seed(seed)
        return power_iteration(lambda v: hessian_vector(loss_of, thetas, v),
                               [t.shape for t in thetas], gen, iters,
                               device=thetas[0].device)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])


def _probe_batch(task, seed: int):
    """A fixed validation batch for the probe: the task's validation split where it has one,
    else its first architecture (or weight) batch."""
    loader = task.validation_batches(seed)
    if loader is not None:
        return next(iter(loader.epoch(0)))
    bt, bv = next(iter(task.batches(0)))
    return bv if bv is not None else bt


class EigenProbe(Addon):
    """Record the Hessian's dominant eigenvalue (``hessian_eig``) every ``every`` epochs."""

    name = "hessian"

    def __init__(self, every: int = 1, iters: int = 20):
        self.every, self.iters = int(every), int(iters)

    def end_epoch(self, strategy, task, history, record) -> dict:
        if record["epoch"] % self.every:
            return {}
        batch = _probe_batch(task, strategy.seed)
        was = strategy.model.training
        strategy.model.train()
        try:
            lam = hessian_eigenvalue(strategy.model, strategy.arch, task.loss_fn, batch,
                                     iters=self.iters, seed=strategy.seed + record["epoch"],
                                     amp=strategy.amp)
        finally:
            strategy.model.train(was)
        if strategy.dist is not None:  # the ranks' batches differ: one value for all
            t = torch.tensor([lam], dtype=torch.float64, device=strategy.dist.device)
            strategy.dist.average_([t])
            lam = float(t)
        return {"hessian_eig": lam}

    def settings(self):
        return {"hessian_every": self.every, "hessian_iters": self.iters}


EARLY_STOP_RULES = ("none", "eigenvalue", "skips", "ada")


def eigenvalue_rule(history: list[dict], record: dict, window: int, factor: float):
    """DARTS-ES's criterion on the epochs' eigenvalues (with this epoch's ``record``): None, or
    (its mean over the last ``window`` epochs, the mean over the window before, the record of
    ``window`` epochs before: the architecture the rule returns)."""
    rows = [r for r in history if "hessian_eig" in r] + \
        ([record] if "hessian_eig" in record else [])
    w = window
    if len(rows) < 2 * w:
        return None
    now = sum(r["hessian_eig"] for r in rows[-w:]) / w
    before = sum(r["hessian_eig"] for r in rows[-2 * w:-w]) / w
    if before > 0 and now > factor * before:
        return now, before, rows[-w - 1], rows[-w]["epoch"], rows[-1]["epoch"]
    return None


class EarlyStop(Addon):
    """Stop the search when a rule fires (see the module's docstring); the record of the epoch
    it fires at carries ``stopped`` (the rule and its figures) and ``stop_genotype`` (the
    architecture the search returns)."""

    name = "early-stop"

    def __init__(self, rule: str = "eigenvalue", window: int = 5, factor: float = 1.3,
                 start: int = 10, max_skips: int = 2):
        if rule not in ("eigenvalue", "skips"):
            raise ArchgradError(f"early_stop must be one of {', '.join(EARLY_STOP_RULES)}, "
                                f"got {rule!r}")
        self.rule, self.window, self.factor = rule, int(window), float(factor)
        self.start, self.max_skips = int(start), int(max_skips)

    def end_epoch(self, strategy, task, history, record) -> dict:
        if record["epoch"] < self.start:
            return {}
        if self.rule == "skips":
            n = record.get("skip_connects")
            if n is not None and n >= self.max_skips:
                return {"stopped": f"skips: the derived normal cell holds {n} skip connections "
                                   f"(at least {self.max_skips})",
                        "stop_genotype": record["genotype"]}
            return {}
        fired = eigenvalue_rule(history, record, self.window, self.factor)
        if fired is None:
            return {}
        now, before, back, first, last = fired
        return {"stopped": f"eigenvalue: its mean over epochs {first}-{last} ({now:.4g}) "
                           f"exceeds {self.factor:g} x its mean over the {self.window} epochs "
                           f"before ({before:.4g})",
                "stop_genotype": back["genotype"], "stop_epoch": back["epoch"]}

    def settings(self):
        out: dict[str, Any] = {"early_stop": self.rule, "es_start": self.start}
        if self.rule == "eigenvalue":
            out.update(es_window=self.window, es_factor=self.factor)
        else:
            out["max_skips"] = self.max_skips
        return out


class AdaptiveRegularization(Addon):
    """DARTS-ADA (RobustDARTS §5.2, its release's ``early_stop=3``): where DARTS-ES would stop,
    go back to the epoch whose architecture DARTS-ES would return (the weights, the
    architecture and both optimizers as they were at its end), multiply the weights' L2
    regularization by ``factor`` (3) and search on; once the weight decay has reached
    ``max_weight_decay`` (243e-4, four times 3 from DARTS's 3e-4) the rule no longer fires. The
    epochs gone back over leave the history; the record of the epoch gone back to says so. A
    progressive strategy's stages each have their own supernet: it goes back within a stage."""

    name = "darts-ada"

    def __init__(self, window: int = 5, factor: float = 1.3, start: int = 10,
                 mul_factor: float = 3.0, max_weight_decay: float = 243e-4):
        self.window, self.factor, self.start = int(window), float(factor), int(start)
        self.mul_factor, self.max_wd = float(mul_factor), float(max_weight_decay)
        self.weight_decay: float | None = None   # the current one, once the search has begun
        self.events: list[dict] = []
        self.snapshots: dict[int, dict] = {}     # record epoch -> states at its end
        self._quiet = False                      # inside a snapshot: no state of its own

    def begin_step(self, strategy, epoch: int, epochs: int) -> None:
        if self.weight_decay is None:
            self.weight_decay = float(strategy.weights_cfg.weight_decay)
        self._apply(strategy)

    def begin_stage(self, strategy, index: int) -> None:
        self.snapshots = {}  # another supernet: DARTS-ADA goes back within a stage only

    def _apply(self, strategy) -> None:
        strategy.weights_cfg.weight_decay = self.weight_decay
        for g in (strategy.weight_opt.param_groups if strategy.weight_opt else []):
            g["weight_decay"] = self.weight_decay

    def final(self) -> bool:
        """The weight decay has reached its maximum: the rule no longer fires."""
        return self.weight_decay is not None and self.weight_decay >= self.max_wd * (1 - 1e-9)

    def end_epoch(self, strategy, task, history, record) -> dict:
        out: dict[str, Any] = {"weight_decay": self.weight_decay}
        fired = None if record["epoch"] < self.start or self.final() else \
            eigenvalue_rule(history, record, self.window, self.factor)
        if fired is not None and fired[2]["epoch"] in self.snapshots:
            now, before, back, first, last = fired
            new = min(self.weight_decay * self.mul_factor, self.max_wd)
            event = {"at_epoch": record["epoch"], "back_to_epoch": back["epoch"],
                     "weight_decay": new,
                     "why": f"eigenvalue: its mean over epochs {first}-{last} ({now:.4g}) "
                            f"exceeds {self.factor:g} x its mean over the {self.window} "
                            f"epochs before ({before:.4g})"}
            out["rollback_to"] = back["epoch"]
            out["ada"] = event
            return out
        self._snapshot(strategy, record["epoch"])
        return out

    def _snapshot(self, strategy, epoch: int) -> None:
        self._quiet = True
        try:
            state = {"model": _cloned(strategy.model.state_dict()),
                     "strategy": _cloned(strategy.state_dict())}
        finally:
            self._quiet = False
        self.snapshots[epoch] = state
        for e in sorted(self.snapshots)[:-(self.window + 1)]:  # the rule looks w epochs back
            del self.snapshots[e]

    def rewind(self, strategy, epoch: int, event: dict) -> None:
        """Restore the states at the end of ``epoch`` with the raised weight decay."""
        snap = self.snapshots[epoch]
        mine = self.state_dict()
        strategy.model.load_state_dict(snap["model"])
        strategy.load_state_dict(snap["strategy"])  # this part's state is restored below
        self.load_state_dict(mine)
        self.weight_decay = event["weight_decay"]
        self.events.append(event)
        self.snapshots = {e: s for e, s in self.snapshots.items() if e <= epoch}
        self._apply(strategy)

    def state_dict(self) -> dict:
        if self._quiet:
            return {}
        return {"weight_decay": self.weight_decay, "events": list(self.events),
                "snapshots": self.snapshots}

    def load_state_dict(self, state: dict) -> None:
        if not state:  # a snapshot's (it holds no state of this part)
            return
        self.weight_decay = state.get("weight_decay")
        self.events = list(state.get("events", []))
        self.snapshots = {int(k): v for k, v in state.get("snapshots", {}).items()}

    def settings(self):
        return {"early_stop": "ada", "es_start": self.start, "es_window": self.window,
                "es_factor": self.factor, "ada_factor": self.mul_factor,
                "ada_max_weight_decay": self.max_wd}


def _cloned(state):
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _cloned(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_cloned(v) for v in state]
    if isinstance(state, tuple):
        return tuple(_cloned(v) for v in state)
    return state
