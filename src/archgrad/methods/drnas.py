"""DrNAS (Chen, Wang, Cheng, Tang & Hsieh, ICLR 2021): architecture search as Dirichlet
distribution learning.

Per edge a Dirichlet distribution with concentration beta = ELU(theta) + 1 (§3.1; the release's
``process_step_vector``). Every forward (weights, architecture and evaluation) mixes with a
sample w ~ Dir(beta); the architecture gradient is pathwise through the sample (§3.1, eq. 3:
the implicit reparameterization of the Gamma draws w_k = g_k / sum g, g_k ~ Gamma(beta_k, 1)).
The regularizer toward the prior (§3.2): "l2" (the release's default, Adam's weight decay
``reg_scale`` on theta) or "kl" (reg_scale * KL(Dir(beta) || Dir(1)) added to the validation
loss, as the DARTS-space code's ``_get_kl_reg``). Derivation: per-edge argmax of the
distribution's mean (the argmax of theta, as the release's softmax). The NAS-Bench-201 search
runs 100 epochs (201-space/train_search.py). The progressive variant (partial channels, then
pruning the candidates) is ``drnas-progressive``.
"""
from __future__ import annotations

import math

import torch

from ..core.arch import Dirichlet, Mix
from ..core.strategy import Estimator, Stage, Strategy
from ..errors import ArchgradError
from . import adam_update, common, register

REGS = ("l2", "kl")


def _gamma(conc: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(conc, 1) draws, differentiable in conc (implicit reparameterization)."""
    return torch._standard_gamma(conc, generator=generator)


class DirichletSample(Estimator):
    """Mixing weights sampled from each edge's Dirichlet, the gradient pathwise."""

    eval_mode = "one Dirichlet sample of the mixing weights per validation batch, as DrNAS trains"
    eval_bn = "batch"

    def __init__(self, reg: str = "l2", reg_scale: float = 1e-3):
        super().__init__()
        if reg not in REGS:
            raise ArchgradError(f"concentration_reg must be one of {', '.join(REGS)}, got {reg!r}")
        self.reg, self.reg_scale = reg, float(reg_scale)
        self._dev_gen: torch.Generator | None = None

    def _generator(self, device, generator: torch.Generator) -> torch.Generator:
        if torch.device(device).type == "cpu":
            return generator
        if self._dev_gen is None or self._dev_gen.device != torch.device(device):
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
            self._dev_gen = torch.Generator(device=device).manual_seed(seed)
        return self._dev_gen

    def sample(self, arch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        par = arch.parameterization
        out = {}
        for k in arch.labels():
            theta, alive = arch.theta[k], arch.alive(k)
            conc = par.concentration(theta, alive)
            conc = torch.where(alive, conc, torch.ones_like(conc))  # dead: drawn, then dropped
            g = _gamma(conc, self._generator(theta.device, generator)) * alive
            out[k] = g / g.sum(-1, keepdim=True).clamp_min(1e-30)
        return out

    def arch_mix(self, ctx):
        a = ctx.arch
        return Mix(self.sample(a, ctx.generator), a.dense_active(), a.edge_weights()), None

    def weight_mix(self, ctx):
        a = ctx.arch
        with torch.no_grad():
            return Mix(self.sample(a, ctx.generator), a.dense_active(), a.edge_weights())

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        gen = generator or torch.Generator().manual_seed(0)

        def draw():
            with torch.no_grad():
                return Mix(self.sample(arch, gen), arch.dense_active(), arch.edge_weights())
        return draw

    def kl(self, arch) -> torch.Tensor:
        """sum over edges of KL(Dir(beta) || Dir(1)) (the prior's concentration 1)."""
        total = 0.0
        for k in arch.labels():
            alive = arch.alive(k)
            conc = arch.parameterization.concentration(arch.theta[k], alive)
            for e in range(conc.shape[0]):
                c = conc[e][alive[e]]
                q = torch.distributions.Dirichlet(c)
                p = torch.distributions.Dirichlet(torch.ones_like(c))
                total = total + torch.distributions.kl_divergence(q, p)
        return total

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        grads = super().arch_grads(ctx, mix, record, target_grads, loss)
        if self.reg == "kl" and self.reg_scale:
            keys = ctx.arch.labels()
            with torch.enable_grad():
                gs = torch.autograd.grad(self.reg_scale * self.kl(ctx.arch),
                                         [ctx.arch.theta[k] for k in keys])
            for k, g in zip(keys, gs):
                grads[k] = grads[k] + g
        return grads

    def get_extra_state(self):
        return {"dev_gen": self._dev_gen.get_state() if self._dev_gen is not None else None,
                "dev": str(self._dev_gen.device) if self._dev_gen is not None else None}

    def set_extra_state(self, state):
        if state and state.get("dev_gen") is not None:
            self._dev_gen = torch.Generator(device=state["dev"])
            self._dev_gen.set_state(state["dev_gen"])

    def settings(self):
        return {"concentration_reg": self.reg, "reg_scale": self.reg_scale}


@register("drnas", family="darts", adam=True, defaults={"epochs": 100}, sources={
    "weights": "DrNAS 201-space/train_search.py (DARTS's: SGD 0.025 cosine to 0.001, momentum "
               "0.9, weight decay 3e-4, clip 5)",
    "arch": "DrNAS 201-space/train_search.py: Adam 3e-4, betas (0.5, 0.999), 1e-3*randn; "
            "the l2 regularizer is Adam's weight decay reg_scale",
    "schedule": "DrNAS 201-space/train_search.py: 100 epochs, batch 64, train_portion 0.5",
    "concentration_reg": "DrNAS §3.2; release default reg_type l2 (kl: DARTS-space "
                         "model_search.py _get_kl_reg, prior Dir(1))",
    "reg_scale": "DrNAS release: reg_scale 1e-3",
    "*": "DrNAS (Chen et al. 2021)"},
    help={"concentration_reg": "the regularizer toward the prior: 'l2' (Adam weight decay "
                               "reg_scale) or 'kl' (reg_scale * KL to Dir(1))",
          "reg_scale": "weight of the regularizer"})
def drnas(concentration_reg: str = "l2", reg_scale: float = 1e-3, **options) -> Strategy:
    """DrNAS: Dirichlet mixing weights, pathwise gradient, regularized toward the prior."""
    if concentration_reg == "l2":
        options.setdefault("arch_weight_decay", reg_scale)
    else:
        options.setdefault("arch_weight_decay", 0.0)
    update = adam_update(options, Dirichlet)
    return Strategy("drnas", DirichletSample(concentration_reg, reg_scale), update,
                    bilevel=True, arch_first=True, **common(options))


# --------------------------------------------------------------------------------------------
# The progressive variant (§3.3): partial channels, then fewer candidates and wider edges
# --------------------------------------------------------------------------------------------
def _widen(old: torch.Tensor, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """``old`` grown to ``shape`` by appending copies of randomly chosen slices along every
    dimension that grew (net2wider's ``InChannelWider`` / ``OutChannelWider`` / ``BNWider``)."""
    out = old
    for dim, (n_old, n_new) in enumerate(zip(old.shape, shape)):
        if n_new > n_old:
            idx = torch.randint(0, n_old, (n_new - n_old,), generator=gen).to(out.device)
            out = torch.cat([out, out.index_select(dim, idx)], dim=dim)
    return out


class ProgressiveDirichlet(Strategy):
    """DrNAS's progressive search (§3.3; the release's ``train_search_progressive.py``): two
    stages of equal length; the first mixes 1/K1 of the channels (partial channels, K1 = 4 on
    NAS-Bench-201), then every edge keeps its best candidates by concentration (5 -> 3; the
    kept parameters keep their values and their optimizer state) and the edges widen to
    1/K2 (2), the weights carried over by net2wider (new channels copy randomly chosen old ones,
    momentum buffers with them, the generator seeded per stage so resume is exact). Each stage
    trains the weights alone for its first 10 of 50 epochs (``stage_warmup`` 0.2); the weights'
    cosine schedule runs over the whole search. On a space without partial channels the stages
    keep the full width."""

    def __init__(self, *args, stage_channels=(4, 2), stage_warmup: float = 0.2, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_channels, self.stage_warmup = tuple(stage_channels), stage_warmup

    @property
    def min_epochs(self) -> int:
        return len(self.stage_channels)

    def plan(self, epochs, space_cls=None, space_options=None):
        n = len(self.stage_channels)
        if epochs < n:
            raise ArchgradError(f"{self.name} runs {n} stages and needs at least {n} epochs, "
                                f"got {epochs}")
        partial = space_cls is not None and "partial_channels" in getattr(space_cls, "options",
                                                                          {})
        bounds = [round(i * epochs / n) for i in range(n + 1)]
        out = []
        for i, k in enumerate(self.stage_channels):
            length = bounds[i + 1] - bounds[i]
            out.append(Stage(bounds[i], bounds[i + 1], {"partial_channels": k} if partial else {},
                             None if i == 0 else i,
                             min(int(round(self.stage_warmup * length)), length - 1)))
        return out

    @torch.no_grad()
    def begin_stage(self, index, stage, model):
        # fewer candidates: each edge keeps its ceil(n / 2) best by concentration (5 -> 3 on
        # NAS-Bench-201, the release's num_keeps; 8 -> 4 on the DARTS space)
        pruned = 0
        for label, g in self.arch.groups.items():
            keep = -(-g.shape[1] // 2)
            theta = self.arch.theta[label].masked_fill(~self.arch.alive(label), -math.inf)
            drop = torch.zeros_like(self.arch.alive(label))
            drop.scatter_(1, theta.argsort(dim=-1, descending=True)[:, keep:], True)
            pruned += self.arch.kill(label, drop)
        # wider edges, the weights carried over (net2wider)
        old_model, old_opt = self.model, self.weight_opt
        old_params = dict(old_model.named_parameters())
        old_buffers = dict(old_model.named_buffers())
        gen = torch.Generator().manual_seed(self.seed + 7919 * index)
        seeds = {}
        for name, p in model.named_parameters():
            q = old_params.get(name)
            if q is not None and q.dim() == p.dim():
                seeds[name] = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
                p.copy_(_widen(q.detach(), p.shape, torch.Generator().manual_seed(seeds[name])))
        for name, b in model.named_buffers():
            q = old_buffers.get(name)
            if q is not None and q.dim() == b.dim() and b.dim() > 0:
                s = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
                b.copy_(_widen(q, b.shape, torch.Generator().manual_seed(s)))
        self.attach(model)
        if old_opt is not None and self.weight_opt is not None:  # configure_optimizer
            for name, p in model.named_parameters():
                q = old_params.get(name)
                buf = old_opt.state.get(q, {}).get("momentum_buffer") if q is not None else None
                if buf is not None and name in seeds:
                    self.weight_opt.state[p]["momentum_buffer"] = _widen(
                        buf, p.shape, torch.Generator().manual_seed(seeds[name]))
        return {"n_pruned": pruned}

    def settings(self):
        out = super().settings()
        out.update({"stages": len(self.stage_channels), "stage_channels": self.stage_channels,
                    "stage_warmup": self.stage_warmup,
                    "keep": "ceil(n / 2) of the candidates at the second stage (5 -> 3)"})
        return out


@register("drnas-progressive", family="darts", adam=True, defaults={"epochs": 100}, sources={
    "weights": "DrNAS 201-space/train_search_progressive.py (DARTS's SGD; cosine over the two "
               "stages' 100 epochs)",
    "arch": "DrNAS train_search_progressive.py (Adam 3e-4, betas (0.5, 0.999), l2 1e-3; its "
            "state kept across the pruning)",
    "schedule": "DrNAS train_search_progressive.py: train_epochs [50, 50], arch steps from "
                "each stage's 10th epoch, batch 64",
    "stage_channels": "DrNAS release: ks [4, 2] (NAS-Bench-201; DARTS-space code [6, 4] with "
                      "its wider search network)",
    "stage_warmup": "DrNAS release: architecture steps when the stage's epoch >= 10 (of 50)",
    "keep": "DrNAS release num_keeps [5, 3] (DARTS-space [7, 4])",
    "concentration_reg": "DrNAS §3.2; release default l2", "reg_scale": "DrNAS release 1e-3",
    "*": "DrNAS (Chen et al. 2021), progressive"},
    help={"stage_channels": "partial-channel K of each stage (1/K of the channels mixed)",
          "stage_warmup": "share of each stage training the weights only",
          "concentration_reg": "'l2' (Adam weight decay reg_scale) or 'kl'",
          "reg_scale": "weight of the regularizer"})
def drnas_progressive(stage_channels=(4, 2), stage_warmup: float = 0.2,
                      concentration_reg: str = "l2", reg_scale: float = 1e-3,
                      **options) -> Strategy:
    """DrNAS, progressive: partial channels, then half the candidates and wider edges."""
    if len(stage_channels) < 2 or any(k < 1 for k in stage_channels):
        raise ArchgradError(f"drnas-progressive option stage_channels takes a positive K per "
                            f"stage (at least two stages), got {list(stage_channels)}")
    options.setdefault("arch_weight_decay", reg_scale if concentration_reg == "l2" else 0.0)
    update = adam_update(options, Dirichlet)
    return ProgressiveDirichlet("drnas-progressive", DirichletSample(concentration_reg, reg_scale),
                                update, bilevel=True, arch_first=True,
                                stage_channels=stage_channels, stage_warmup=stage_warmup,
                                **common(options))
