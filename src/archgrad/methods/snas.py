"""SNAS (Xie, Zheng, Liu & Lin, ICLR 2019): stochastic NAS with the concrete distribution.

Per edge Z = softmax((log p + G) / lambda) with Gumbel noise G (eq. 5); the search gradient is
pathwise through Z; weights and architecture are updated from the same loss (single level, §3.1),
on all of the training data. The temperature is annealed linearly per epoch from ``temp_init``
to ``temp_min`` as the official ``utils.Temp_Scheduler``: lambda_e = temp_min + (temp_init -
temp_min) (1 - (e + 1) / E) at epoch e of E (1.0 and 0.03, ``train_search.py``). The official
code clips the architecture gradient's norm at 10 and the weights' at 5. On the DARTS space the
child network is SNAS's (``genotype_edge_all``: per-edge argmax with ``none``, the space's
``rule="snas"``). Optional resource constraint (§2.4): the expected cost
E[C(Z)] = sum_e E[Z_e^T C(O_e)] (eqs. 10-11) with per-candidate parameters, FLOPs and memory
access cost (Appendix F), each normalised by its largest value in the group and averaged, its
gradient estimated per edge by the policy gradient C_e(k_e) grad log p_e(k_e) with k_e the sampled
candidate. ``resource_weight`` sets eta of eq. 9; ``"mild"``, ``"moderate"``, ``"aggressive"`` name
three levels calibrated on NAS-Bench-201 (bench/snas_resource.py).
"""
from __future__ import annotations

import math

import torch

from ..core.arch import Mix
from ..core.costs import CRITERIA, normalized
from ..core.sampling import gumbel, score_grads
from ..core.strategy import Estimator, StepContext, Strategy
from ..errors import ArchgradError
from . import adam_update, common, register

#: SNAS names three constraint levels (Table 1: mild / moderate / aggressive) but gives no
#: weights for them, in the paper or its code at hand: these are archgrad's, calibrated on
#: NAS-Bench-201 (bench/snas_resource.py shows what each does on the DARTS space)
RESOURCE_LEVELS = {"none": 0.0, "mild": 0.01, "moderate": 0.03, "aggressive": 0.1}


TEMP_SCHEDULES = ("linear", "cosine")


class GumbelSoftmax(Estimator):
    needs_costs = False
    eval_mode = ("one relaxed sample Z (Gumbel-softmax at the epoch's temperature) per "
                 "validation batch, as SNAS trains")
    eval_bn = "batch"

    def __init__(self, temp_init: float = 1.0, temp_min: float = 0.03,
                 resource_weight: float | str = 0.0, resource: str = "all",
                 temp_schedule: str = "linear"):
        super().__init__()
        if temp_schedule not in TEMP_SCHEDULES:
            raise ArchgradError(f"temp_schedule must be one of {', '.join(TEMP_SCHEDULES)}, "
                                f"got {temp_schedule!r}")
        if isinstance(resource_weight, str):
            if resource_weight not in RESOURCE_LEVELS:
                raise ArchgradError(f"resource_weight must be a number or one of "
                                    f"{', '.join(RESOURCE_LEVELS)}, got {resource_weight!r}")
            resource_weight = RESOURCE_LEVELS[resource_weight]
        if resource not in ("all",) + CRITERIA:
            raise ArchgradError(f"resource must be one of all, {', '.join(CRITERIA)}; "
                                f"got {resource!r}")
        if not (0 < temp_min if temp_schedule == "linear" else 0 <= temp_min) \
                or not temp_min <= temp_init or temp_init <= 0:
            raise ArchgradError("SNAS needs 0 < temp_min <= temp_init (0 <= temp_min with "
                                "temp_schedule=cosine)")
        self.temp_init, self.temp_min, self.temp_schedule = temp_init, temp_min, temp_schedule
        self.resource_weight, self.resource = float(resource_weight), resource
        self.needs_costs = self.resource_weight > 0
        self.costs: dict[str, torch.Tensor] = {}

    def bind(self, groups, costs, device):
        if self.needs_costs:
            if costs is None:
                raise ArchgradError("SNAS's resource constraint needs the space's op costs")
            for k, c in costs.items():
                c = normalized(c)
                c = c.mean(-1) if self.resource == "all" else c[..., CRITERIA.index(self.resource)]
                self.costs[k] = c.to(device)

    def temperature_at(self, epoch: int, epochs: int) -> float:
        """Linear per epoch, as the official Temp_Scheduler (stepped before each epoch):
        temp_min + (temp_init - temp_min) (1 - (epoch + 1) / epochs), at least temp_min.
        Cosine: its value at the epoch's start (for evaluation)."""
        if self.temp_schedule == "cosine":
            return self._cosine(epoch / max(epochs, 1))
        frac = 1.0 - (epoch + 1) / max(epochs, 1)
        return max(self.temp_min + (self.temp_init - self.temp_min) * frac, self.temp_min)

    def _cosine(self, frac: float) -> float:
        # AdvantageNAS's comparison code (util.py mode "S"): (cos(pi t / T) + 1) / 2 at
        # iteration t of T, from temp_init to temp_min
        return self.temp_min + (self.temp_init - self.temp_min) * (1 + math.cos(math.pi * frac)) / 2

    def temperature(self, ctx: StepContext) -> float:
        if self.temp_schedule == "cosine":
            if ctx.total_arch_steps > 0:
                return self._cosine(ctx.arch_step_index / ctx.total_arch_steps)
            return self._cosine(ctx.progress)
        return self.temperature_at(ctx.epoch, ctx.epochs)

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        gen = generator or torch.Generator().manual_seed(0)
        lam = self.temperature_at(epoch, epochs)

        def draw():
            z = {}
            for k, lp in arch.log_probs().items():
                lp = lp.detach()
                g = gumbel(lp.shape, gen).to(lp.device, lp.dtype)
                z[k] = torch.softmax((lp + g) / lam, dim=-1)
            return Mix(z, arch.dense_active())
        return draw

    def settings(self):
        return {"temp_init": self.temp_init, "temp_min": self.temp_min,
                "temp_schedule": self.temp_schedule,
                "resource_weight": self.resource_weight, "resource": self.resource}

    def _relaxed(self, ctx: StepContext, log_probs):
        lam = self.temperature(ctx)
        z, idx = {}, {}
        for k, lp in log_probs.items():
            g = gumbel(lp.shape, ctx.generator).to(lp.device, lp.dtype)
            logits = (lp + g) / lam
            z[k] = torch.softmax(logits, dim=-1)
            # an exact sample from p (Gumbel-max), kept on the device (read at the epoch's end)
            idx[k] = logits.detach().argmax(-1)
        return z, idx

    def weight_mix(self, ctx):
        z, _ = self._relaxed(ctx, {k: v.detach() for k, v in ctx.arch.log_probs().items()})
        return Mix(z, ctx.arch.dense_active())

    def arch_mix(self, ctx):
        z, idx = self._relaxed(ctx, ctx.arch.log_probs())
        return Mix(z, ctx.arch.dense_active()), idx

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        grads = super().arch_grads(ctx, mix, record, target_grads, loss)
        if self.resource_weight > 0:
            # eq. 11 by policy gradient: eta * C_e(k_e) * grad log p_e(k_e) per edge
            coef = {k: self.resource_weight * self.costs[k][
                torch.arange(len(v), device=self.costs[k].device), v.to(self.costs[k].device)]
                for k, v in record.items()}
            for k, g in score_grads(ctx.arch, record, coef).items():
                grads[k] = grads[k] + g
        return grads

    def sample_of(self, record):
        return record


DEFAULTS = {"epochs": 150, "arch_grad_clip": 10.0}
SOURCES = {"weights": "SNAS Appendix G.1 (DARTS's: momentum SGD 0.025 cosine, momentum 0.9, "
           "decay 3e-4); train_search.py (learning_rate_min 0.001, grad_clip 5)",
           "arch": "SNAS Appendix G.1 (Adam 3e-4, betas (0.5, 0.999), decay 1e-3); "
                   "train_search.py (architecture gradient clipped at norm 10)",
           "schedule": "SNAS §3.1: single level over the same data (all of the training set), "
                       "150 epochs, batch 64",
           "temp_init": "SNAS train_search.py --temp 1, utils.Temp_Scheduler (linear)",
           "temp_min": "SNAS train_search.py --temp_min 0.03",
           "temp_schedule": "SNAS utils.Temp_Scheduler (linear per epoch); 'cosine' per "
                            "iteration as AdvantageNAS's comparison code (util.py mode S)",
           "rule": "SNAS train_search.py genotype_edge_all (argmax per edge with none)",
           "resource_weight": "SNAS §2.4 eq. 9 (off by default)", "resource": "SNAS Appendix F",
           "*": "SNAS (Xie et al. 2019)"}


@register("snas", family="relaxed", adam=True, defaults=DEFAULTS, sources=SOURCES,
          help={"temp_init": "initial temperature", "temp_min": "final temperature",
                "temp_schedule": "'linear' per epoch (SNAS) or 'cosine' per iteration "
                                 "(AdvantageNAS's comparison code)",
                "resource_weight": "eta of eq. 9, or mild / moderate / aggressive",
                "resource": "all, params, flops or mac", "rule": "derivation rule on the DARTS "
                "space: 'snas' (per-edge argmax with none) or 'darts' (two inputs per node)",
                "bilevel": "architecture steps on the validation half (as NNI's GumbelDARTS)"})
def snas(temp_init: float = 1.0, temp_min: float = 0.03, resource_weight: float | str = 0.0,
         resource: str = "all", bilevel: bool = False, rule: str = "snas",
         temp_schedule: str = "linear", **options) -> Strategy:
    """SNAS: Gumbel-softmax relaxation, annealed temperature, single level, optional resource
    constraint (Xie et al. 2019)."""
    est = GumbelSoftmax(temp_init, temp_min, resource_weight, resource, temp_schedule)
    if rule not in ("snas", "darts"):
        raise ArchgradError(f"rule must be 'snas' or 'darts', got {rule!r}")
    update = adam_update(options)
    opts = common(options)
    opts.setdefault("derive_options", {})["rule"] = rule
    return Strategy("snas", est, update, bilevel=bool(bilevel), **opts)
