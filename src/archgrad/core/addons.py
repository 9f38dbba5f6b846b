"""Parts any compatible strategy can take, beside its estimator and update rule.

* :class:`BetaDecay` — β-DARTS's regularization of the architecture logits (Ye et al. 2022).
* :class:`ZeroOne` — FairDARTS's zero-one loss on the mixing probabilities (Chu et al. 2020).
* :class:`Perturbation` — SDARTS's weight step at a randomly (RS) or adversarially (ADV, PGD)
  perturbed architecture (Chen & Hsieh 2020).
* :class:`AuxSkip` — DARTS-'s auxiliary skip connection, its coefficient decaying to 0
  (Chu et al. 2021); the supernet holds the skip (space option ``auxiliary_skip``).
* :class:`LayerAlignment` — Λ-DARTS's correction of the weight gradient that aligns the cells'
  gradients of the shared architecture (Movahedi et al. 2023).
* :class:`OperationStopping` — OLES's operation-level early stopping by gradient matching
  (Jiang et al. 2023).

An addon is stateless or keeps its state in :meth:`Addon.state_dict` (the checkpoint holds it);
a schedule is a function of the epoch. Strategies take them through common options
(``beta_decay``, ``zero_one``, ``perturb``, ``aux_skip``, ``lambda_reg``, ``oles``), so β-decay
runs on GDAS as well as on DARTS.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ArchgradError
from .arch import Mix


class Addon:
    """A part of a strategy's step. Hooks (each optional):

    * :meth:`arch_grads` — gradients added to the architecture's (a regularizer of its loss);
    * :meth:`weight_mix` — the mix the weight step trains under;
    * :meth:`before_weight` / :meth:`after_backward` — around the weight step's backward (the
      weights' gradients are set when the latter runs, before clipping and the update);
    * :meth:`begin_step` — before every iteration (schedules held by the supernet).
    """

    name = "addon"
    #: needs a weight step of its own (no single backward shared with the architecture)
    own_weight_step = False
    #: supernet options it needs, applied where the space takes them and the user has not set
    #: them (as a strategy's own space defaults)
    space_defaults: dict = {}

    def check(self, strategy) -> None:
        """Raise a one-line error where ``strategy`` cannot take this part."""

    def begin_step(self, strategy, epoch: int, epochs: int) -> None:
        pass

    def begin_stage(self, strategy, index: int) -> None:
        """A progressive strategy's next stage (a new supernet) begins."""

    def end_epoch(self, strategy, task, history: list[dict], record: dict) -> dict:
        """Figures added to the epoch's record (``stopped`` ends the search)."""
        return {}

    def arch_grads(self, ctx, arch) -> dict[str, Tensor]:
        return {}

    def weight_mix(self, ctx, mix: Mix) -> Mix:
        return mix

    def before_weight(self, ctx, strategy, mix: Mix) -> None:
        pass

    def after_backward(self, ctx, strategy, mix: Mix) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def settings(self) -> dict[str, Any]:
        return {}


def _logit_parameterization(strategy, what: str) -> None:
    name = strategy.update.parameterization.name
    if name not in ("softmax", "node-softmax", "sigmoid", "dirichlet"):
        raise ArchgradError(f"{what} regularizes architecture logits; strategy "
                            f"'{strategy.name}' keeps its parameters as {name}")


# --------------------------------------------------------------------------------------------
class BetaDecay(Addon):
    """β-DARTS's beta-decay regularization (Ye et al., CVPR 2022, eq. 9): the loss
    lambda_t * mean over edges of log sum_k exp(beta_k) (the smoothmax of each edge's logits,
    alive candidates only; its gradient is the edge's softmax), added to the architecture's
    loss. lambda_t = weight * epoch / span grows linearly (the release's ``0 + 50*epoch/100``:
    weight 50 reached after a span of 100 epochs)."""

    name = "beta-decay"

    def __init__(self, weight: float = 50.0, span: int = 100):
        self.weight, self.span = float(weight), int(span)

    def check(self, strategy):
        _logit_parameterization(strategy, "beta_decay")

    def coef(self, epoch: int) -> float:
        return self.weight * epoch / max(self.span, 1)

    def loss(self, arch) -> Tensor:
        total = 0.0
        for k in arch.labels():
            theta = arch.theta[k]
            lse = torch.logsumexp(theta.masked_fill(~arch.alive(k), -math.inf), dim=-1)
            total = total + lse.mean()
        return total

    def arch_grads(self, ctx, arch):
        c = self.coef(ctx.epoch)
        if c == 0.0:
            return {}
        keys = list(arch.labels())
        with torch.enable_grad():
            gs = torch.autograd.grad(c * self.loss(arch), [arch.theta[k] for k in keys])
        return dict(zip(keys, gs))

    def settings(self):
        return {"beta_decay": self.weight, "beta_decay_span": self.span}


class ZeroOne(Addon):
    """FairDARTS's zero-one loss (Chu et al., ECCV 2020, eq. 5): w01 * L01 with
    L01 = -1/N sum_i (p_i - 0.5)^2 over every alive (edge, candidate) probability, added to the
    architecture's loss; it pushes each independent sigmoid to 0 or 1 (weight 10, §4.1)."""

    name = "zero-one"

    def __init__(self, weight: float = 10.0):
        self.weight = float(weight)

    def loss(self, arch) -> Tensor:
        sq, n = 0.0, 0.0
        for k, p in arch.probs().items():
            a = arch.alive(k)
            sq = sq + (((p - 0.5) ** 2) * a).sum()
            n = n + a.sum()  # a tensor: no host read inside a step
        return -sq / n

    def arch_grads(self, ctx, arch):
        keys = list(arch.labels())
        with torch.enable_grad():
            gs = torch.autograd.grad(self.weight * self.loss(arch),
                                     [arch.theta[k] for k in keys], allow_unused=True)
        return {k: g for k, g in zip(keys, gs) if g is not None}

    def settings(self):
        return {"zero_one": self.weight}


# --------------------------------------------------------------------------------------------
def project_rows(w: Tensor) -> Tensor:
    """SDARTS's ``clip``: each edge's weights clamped to [0, 1] and renormalised to sum 1 (an
    edge left all zero puts 1 on its largest entry before the clamp)."""
    c = w.clamp(0.0, 1.0)
    empty = c.sum(-1, keepdim=True) <= 0  # decided on the device: no host read
    onehot = torch.zeros_like(c).scatter_(-1, w.argmax(-1, keepdim=True), 1.0)
    c = torch.where(empty, onehot, c)
    return c / c.sum(-1, keepdim=True)


class Perturbation(Addon):
    """SDARTS (Chen & Hsieh, ICML 2020, §3): the weight step trains under a perturbed
    architecture A + delta, ||delta||_inf <= eps, projected back onto the simplex. ``kind``
    "random" (SDARTS-RS, eq. 4: delta ~ U[-eps, eps]) or "adversarial" (SDARTS-ADV, eq. 5: PGD
    maximising the training loss, a random start, ``steps`` signed steps of 2 eps / steps, in
    eval mode). eps grows linearly from ``eps_min`` to ``eps`` over the search, as the release's
    ``epsilon_alpha = 0.03 + (0.3 - 0.03) * epoch / epochs``."""

    own_weight_step = True

    def __init__(self, kind: str = "random", eps: float = 0.3, eps_min: float = 0.03,
                 steps: int = 7):
        if kind not in ("random", "adversarial"):
            raise ArchgradError(f"perturb must be 'none', 'random' or 'adversarial', got {kind!r}")
        if eps_min > eps:
            raise ArchgradError(f"perturb_eps_min ({eps_min}) must not exceed perturb_eps ({eps})")
        self.kind, self.eps, self.eps_min, self.steps = kind, float(eps), float(eps_min), int(steps)
        self.name = f"perturb-{kind}"

    def check(self, strategy):
        if not strategy.estimator.dense:
            raise ArchgradError(f"perturb needs a relaxed strategy (a dense mix of every "
                                f"candidate); '{strategy.name}' samples its architectures")

    def eps_at(self, epoch: int, epochs: int) -> float:
        return self.eps_min + (self.eps - self.eps_min) * epoch / max(epochs, 1)

    def _uniform(self, w: Tensor, eps: float, gen: torch.Generator) -> Tensor:
        u = torch.rand(w.shape, generator=gen, dtype=torch.float64)
        return ((2 * u - 1) * eps).to(w)

    def weight_mix(self, ctx, mix):
        eps = self.eps_at(ctx.epoch, ctx.epochs)
        base = {k: w.detach() for k, w in mix.weights.items()}
        w = {k: project_rows(v + self._uniform(v, eps, ctx.generator)) for k, v in base.items()}
        if self.kind == "adversarial":
            w = self._pgd(ctx, mix, base, w, eps)
        return Mix(w, mix.active, mix.edge_scale, mix.inactive_as_constant, mix.skip_dropout)

    def _pgd(self, ctx, mix, base, w, eps):
        model = ctx.model
        was = model.training
        model.eval()  # Linf_PGD_alpha: the attack runs in eval mode
        step = 2 * eps / max(self.steps, 1)
        try:
            for _ in range(self.steps):
                leaves = {k: v.detach().requires_grad_(True) for k, v in w.items()}
                m = Mix(leaves, mix.active, mix.edge_scale, mix.inactive_as_constant)
                with torch.enable_grad():
                    _, loss = ctx.forward(m, ctx.train_batch)
                    keys = list(leaves)
                    gs = torch.autograd.grad(loss, [leaves[k] for k in keys], allow_unused=True)
                with torch.no_grad():
                    for k, g in zip(keys, gs):
                        v = leaves[k].detach()
                        if g is not None:
                            v = v + step * g.sign()  # ascent on the training loss
                        v = base[k] + (v - base[k]).clamp(-eps, eps)
                        w[k] = project_rows(v)
        finally:
            model.train(was)
        return w

    def settings(self):
        return {"perturb": self.kind, "perturb_eps": self.eps, "perturb_eps_min": self.eps_min,
                **({"perturb_steps": self.steps} if self.kind == "adversarial" else {})}


# --------------------------------------------------------------------------------------------
def aux_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "aux_coef")]


class AuxSkip(Addon):
    """DARTS- (Chu et al., ICLR 2021, §3.2): every mixed edge adds beta_t times an auxiliary
    skip connection (identity; FactorizedReduce on a stride-2 edge, as the release's
    ``MixedOp``), beta_t decaying linearly from ``start`` to 0 over the search
    (DecayScheduler "linear": beta_t = start * (1 - epoch / epochs)). The supernet builds the
    skips (space option ``auxiliary_skip``); on a space without it the strategy is its base
    method."""

    name = "aux-skip"
    space_defaults = {"auxiliary_skip": True}

    def __init__(self, start: float = 1.0):
        self.start = float(start)

    def coef(self, epoch: int, epochs: int) -> float:
        return self.start * (1.0 - epoch / max(epochs, 1))

    def begin_step(self, strategy, epoch, epochs):
        c = self.coef(epoch, epochs)
        for m in aux_modules(strategy.model):
            m.aux_coef = c

    def settings(self):
        return {"aux_skip": self.start}


# --------------------------------------------------------------------------------------------
def alignment(grads: list[Tensor]) -> Tensor:
    """Λ-DARTS's layer alignment: the mean over pairs i < j of cos(g_i, g_j)."""
    u = [g.flatten() / g.norm() for g in grads]
    n = len(u)
    pairs = [(u[i] * u[j]).sum() for i in range(n) for j in range(i + 1, n)]
    return sum(pairs) / len(pairs)


def alignment_direction(grads: list[Tensor]) -> list[Tensor]:
    """d alignment / d g_l for every layer l: (1 / ||g_l||) (I - u_l u_l^T) sum_j u_j divided by
    the number of pairs (the release's ``get_perturbations`` before its scaling)."""
    u = [g / g.norm().clamp_min(1e-30) for g in grads]
    total = sum(u)
    n = len(grads)
    pairs = n * (n - 1) / 2
    out = []
    for g, ul in zip(grads, u):
        proj = total - ul * (ul * total).sum()
        out.append(proj / g.norm().clamp_min(1e-30) / pairs)
    return out


class LayerAlignment(Addon):
    """Λ-DARTS (Movahedi et al., ICLR 2023, §4): the weights descend L_train - lambda_t A(w) with
    A the alignment of the cells' gradients of the shared architecture (mean pairwise cosine of
    g_l = dL/dA_l, each cell's copy of the mixing weights). Its gradient in w is taken by
    central differences along d A / d g_l (the release's ``get_perturbations`` and
    ``get_full_grads``): the weights' gradient gains
    lambda_t (grad_w L(A_l - e p_l) - grad_w L(A_l + e p_l)) / (2 e), e = eps0 / ||p||.
    lambda_t = lam * epoch / (epochs - 1). A space whose supernet has fewer than two cells per
    group (the recurrent and toy spaces) gets no correction."""

    name = "lambda"
    own_weight_step = True

    def __init__(self, lam: float = 0.125, eps0: float = 1e-4):
        self.lam, self.eps0 = float(lam), float(eps0)

    def check(self, strategy):
        if not strategy.estimator.dense:
            raise ArchgradError(f"lambda_reg needs a relaxed strategy; '{strategy.name}' samples "
                                f"its architectures")

    def coef(self, epoch: int, epochs: int) -> float:
        return self.lam * epoch / max(epochs - 1, 1)

    def weight_mix(self, ctx, mix):
        # a copy of the weights per cell (leaves), whose gradients the backward fills
        return Mix({k: v.detach() for k, v in mix.weights.items()}, mix.active, mix.edge_scale,
                   mix.inactive_as_constant, mix.skip_dropout, layered=True)

    def after_backward(self, ctx, strategy, mix):
        c = self.coef(ctx.epoch, ctx.epochs)
        if c == 0.0 or not mix.layers:
            return
        per_label: dict[str, list[tuple[int, Tensor]]] = {}
        for i, ws in sorted(mix.layers.items()):
            for k, w in ws.items():
                if w.grad is not None:
                    per_label.setdefault(k, []).append((i, w.grad.detach()))
        pert: dict[int, dict[str, Tensor]] = {}
        for k, items in per_label.items():
            if len(items) < 2:
                continue
            dirs = alignment_direction([g for _, g in items])
            for (i, _), d in zip(items, dirs):
                pert.setdefault(i, {})[k] = d
        if not pert:
            return
        norm = torch.sqrt(sum((d.double() ** 2).sum() for p in pert.values() for d in p.values()))
        eps = (self.eps0 / norm).float()  # a tensor: no host read
        W = strategy.weight_params
        base = {i: {k: w.detach() for k, w in ws.items()} for i, ws in mix.layers.items()}

        def grads_at(sign: float):
            layers = {i: {k: (w - sign * eps * pert[i][k]) if k in pert.get(i, {}) else w
                          for k, w in ws.items()} for i, ws in base.items()}
            m = Mix(mix.weights, mix.active, mix.edge_scale, mix.inactive_as_constant,
                    mix.skip_dropout, layered=True, layers=layers)
            _, loss = ctx.forward(m, ctx.train_batch)
            return ctx.grad(loss, W)  # unscaled (fp16: scaled again below)

        fwd, bwd = grads_at(+1.0), grads_at(-1.0)  # the release's pert and -pert
        with torch.no_grad():
            for p, f, b in zip(W, fwd, bwd):
                if f is None or b is None:
                    continue
                reg = (f - b) / (2 * eps)
                if strategy.scaler is not None:  # p.grad holds the scaled gradient
                    reg = strategy.scaler.scale(reg)
                p.grad = c * reg if p.grad is None else p.grad + c * reg

    def settings(self):
        return {"lambda_reg": self.lam, "lambda_eps": self.eps0}


# --------------------------------------------------------------------------------------------
def op_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters of every parametric candidate op of the supernet's mixed ops, one list
    per (mixed op, candidate), in module order."""
    from .ops import MixedOp
    out = []
    for m in model.modules():
        if isinstance(m, MixedOp):
            for op in m.ops:
                ps = [p for p in op.parameters() if p.requires_grad]
                if ps:
                    out.append(ps)
    return out


def _matching(a: Tensor, b: Tensor) -> Tensor:
    """The release's per-parameter score: cosine along the first dimension, averaged."""
    if a.dim() == 1:
        a, b = a.view(-1, 1), b.view(-1, 1)
    return torch.cosine_similarity(a, b, dim=0).mean()


class OperationStopping(Addon):
    """OLES (Jiang et al., NeurIPS 2023, §3): each parametric candidate op's gradient matching
    score, the cosine of its parameters' gradients on the training and the validation data,
    is averaged over ``window`` iterations; an op whose mean falls below ``threshold`` stops
    training (its parameters frozen for the rest of the search). ``match``: "official" (the
    release's ``check_grads_cosine``: the previous training gradient against itself plus the
    validation gradient, as its architecture step's backward accumulates them; its threshold
    0.4 and count 20) or "paper" (training against validation gradient of the same step). The
    validation gradient of the op weights costs one more backward per step. Ops are found as the
    supernet's mixed-op candidates (on nb201 the per-edge cell: ``fused`` off)."""

    name = "oles"
    own_weight_step = True
    space_defaults = {"fused": False}  # the per-edge nb201 cell holds one module per op

    def __init__(self, threshold: float = 0.4, window: int = 20, match: str = "official"):
        if match not in ("official", "paper"):
            raise ArchgradError(f"oles_match must be 'official' or 'paper', got {match!r}")
        self.threshold, self.window, self.match = float(threshold), int(window), match
        self.frozen: list[bool] = []
        self.sums: list[float] = []
        self.count = 0
        self._prev: list[list[Tensor]] | None = None
        self._val: list[list[Tensor]] | None = None
        self._groups: list[list[nn.Parameter]] | None = None
        self._model_id = None

    def groups(self, strategy) -> list[list[nn.Parameter]]:
        if self._groups is None or self._model_id != id(strategy.model):
            self._groups = op_groups(strategy.model)
            self._model_id = id(strategy.model)
            n = len(self._groups)
            if len(self.frozen) != n:
                self.frozen, self.sums, self.count = [False] * n, [0.0] * n, 0
        return self._groups

    def before_weight(self, ctx, strategy, mix):
        groups = self.groups(strategy)
        if not groups or ctx.valid_batch is None:
            self._val = None
            return
        live = [i for i in range(len(groups)) if not self.frozen[i]]
        flat = [p for i in live for p in groups[i]]
        if not flat:
            self._val = None
            return
        with torch.enable_grad():
            _, loss = ctx.forward(mix, ctx.valid_batch)
            gs = ctx.grad(loss, flat)
        out, j = [None] * len(groups), 0
        for i in live:
            n = len(groups[i])
            out[i] = [g.detach() if g is not None else None for g in gs[j:j + n]]
            j += n
        self._val = out

    def after_backward(self, ctx, strategy, mix):
        groups = self.groups(strategy)
        if not groups:
            return
        train = [[p.grad.detach().clone() if p.grad is not None else None for p in ps]
                 for ps in groups]
        if self._val is not None:
            ref = train if self.match == "paper" else self._prev
            if ref is not None:
                for i, ps in enumerate(groups):
                    if self.frozen[i] or self._val[i] is None:
                        continue
                    scores = []
                    for a, v, t in zip(ref[i], self._val[i], train[i]):
                        if a is None or v is None:
                            continue
                        other = v if self.match == "paper" else a + v
                        scores.append(float(_matching(other, a)))
                    if scores:
                        self.sums[i] += sum(scores) / len(scores)
                self.count += 1
                if self.count >= self.window:
                    for i in range(len(groups)):
                        if not self.frozen[i] and self.sums[i] / self.count < self.threshold:
                            self.frozen[i] = True
                    self.sums, self.count = [0.0] * len(groups), 0
        self._prev = train
        for i, ps in enumerate(groups):  # a frozen op takes no update (nor weight decay)
            if self.frozen[i]:
                for p in ps:
                    p.grad = None

    def state_dict(self):
        return {"frozen": list(self.frozen), "sums": list(self.sums), "count": self.count,
                "prev": self._prev}

    def load_state_dict(self, state):
        self.frozen = list(state.get("frozen", []))
        self.sums = list(state.get("sums", []))
        self.count = int(state.get("count", 0))
        self._prev = state.get("prev")
        self._groups = None

    def settings(self):
        return {"oles": self.threshold, "oles_window": self.window, "oles_match": self.match}


#: option -> default of the parts every strategy takes (0 / "none": off)
ADDON_DEFAULTS = {"beta_decay": 0.0, "beta_decay_span": 100, "zero_one": 0.0,
                  "perturb": "none", "perturb_eps": 0.3, "perturb_eps_min": 0.03,
                  "perturb_steps": 7, "aux_skip": 0.0, "lambda_reg": 0.0, "lambda_eps": 1e-4,
                  "oles": 0.0, "oles_window": 20, "oles_match": "official",
                  "hessian_every": 0, "hessian_iters": 20, "early_stop": "none",
                  "es_window": 5, "es_factor": 1.3, "es_start": 10, "es_skips": 2,
                  "ada_factor": 3.0, "ada_max_weight_decay": 243e-4}
ADDON_HELP = {
    "beta_decay": "β-DARTS: weight of the beta-decay loss reached after beta_decay_span epochs "
                  "(grows linearly from 0; 0: off)",
    "beta_decay_span": "epochs over which the beta-decay weight grows to beta_decay",
    "zero_one": "FairDARTS: weight of the zero-one loss on the probabilities (0: off)",
    "perturb": "SDARTS: the weight step's architecture perturbed: 'none', 'random' (RS) or "
               "'adversarial' (ADV, PGD)",
    "perturb_eps": "SDARTS: the perturbation's final radius (L-inf)",
    "perturb_eps_min": "SDARTS: its radius at the first epoch (linear to perturb_eps)",
    "perturb_steps": "SDARTS-ADV: PGD steps",
    "aux_skip": "DARTS-: initial coefficient of the auxiliary skip, decaying linearly to 0 "
                "(0: off)",
    "lambda_reg": "Λ-DARTS: final weight of the layer-alignment correction (0: off)",
    "lambda_eps": "Λ-DARTS: finite-difference step eps0",
    "oles": "OLES: gradient-matching threshold below which an op stops training (0: off)",
    "oles_window": "OLES: iterations the gradient-matching score is averaged over",
    "oles_match": "OLES: 'official' (the release's accumulated gradients) or 'paper'",
    "hessian_every": "RobustDARTS: record the dominant eigenvalue of the validation loss's "
                     "Hessian in the architecture every N epochs (0: off; costs passes)",
    "hessian_iters": "power iterations of the eigenvalue",
    "early_stop": "stop the search: 'none', 'eigenvalue' (DARTS-ES) or 'skips' (DARTS+); "
                  "'ada' (DARTS-ADA): go back and raise the weight decay instead",
    "es_window": "DARTS-ES: epochs of the eigenvalue's local average",
    "es_factor": "DARTS-ES: growth of that average that stops the search",
    "es_start": "early stopping: the first epoch it may fire",
    "es_skips": "skip rule: skip connections in the derived normal cell that stop the search",
    "ada_factor": "DARTS-ADA: factor of the weight decay at each going back",
    "ada_max_weight_decay": "DARTS-ADA: the weight decay past which it no longer goes back",
}


def build_addons(opts: dict) -> list[Addon]:
    """The addons the options ask for (pops nothing: ``opts`` holds every ADDON_DEFAULTS key)."""
    o = {**ADDON_DEFAULTS, **opts}
    out: list[Addon] = []
    if o["beta_decay"]:
        out.append(BetaDecay(o["beta_decay"], o["beta_decay_span"]))
    if o["zero_one"]:
        out.append(ZeroOne(o["zero_one"]))
    if o["perturb"] != "none":
        out.append(Perturbation(o["perturb"], o["perturb_eps"], o["perturb_eps_min"],
                                o["perturb_steps"]))
    if o["aux_skip"]:
        out.append(AuxSkip(o["aux_skip"]))
    if o["lambda_reg"]:
        out.append(LayerAlignment(o["lambda_reg"], o["lambda_eps"]))
    if o["oles"]:
        out.append(OperationStopping(o["oles"], o["oles_window"], o["oles_match"]))
    from .collapse import AdaptiveRegularization, EarlyStop, EigenProbe
    eigen = o["early_stop"] in ("eigenvalue", "ada")
    every = o["hessian_every"] or (1 if eigen else 0)
    if eigen and every != 1:
        raise ArchgradError(f"early_stop={o['early_stop']} needs the eigenvalue every epoch "
                            f"(hessian_every 1), got hessian_every={every}")
    if every:
        out.append(EigenProbe(every, o["hessian_iters"]))
    if o["early_stop"] == "ada":
        out.append(AdaptiveRegularization(o["es_window"], o["es_factor"], o["es_start"],
                                          o["ada_factor"], o["ada_max_weight_decay"]))
    elif o["early_stop"] != "none":
        out.append(EarlyStop(o["early_stop"], o["es_window"], o["es_factor"], o["es_start"],
                             o["es_skips"]))
    return out
