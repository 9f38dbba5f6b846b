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
pruning the candidates, on the DARTS space) is not built.
"""
from __future__ import annotations

import torch

from ..arch import Dirichlet, Mix
from ..errors import ArchgradError
from ..strategy import Estimator, Strategy
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
