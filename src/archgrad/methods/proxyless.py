"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): binarised path gates, two sampled paths per edge.

Architecture step ('two' mode of the official code): per edge sample two distinct candidates from
p, renormalise their probabilities p~ over the pair, and open the gate g of one of them drawn from
p~. The forward computes the pair; the open gate's op passes (weight 1), the other is computed
with weight 0 so that dL/dg_j = <dL/dO, O_j> is available for both. BinaryConnect-style gradient
(eq. 4 of the paper, restricted to the pair): dL/dalpha_i = sum_j dL/dg_j p~_j (delta_ij - p~_i).
After the Adam step the pair's logits are shifted so that the sum of exp(alpha) over the pair is
unchanged (the official rescaling), which keeps the other candidates' probabilities fixed. As the
official ``MixedEdge.set_arch_param_grad``, an edge whose open gate is the zero op gets no update
(its logits and Adam moments stay as they are). The weight step samples one candidate from p;
an architecture step follows every fifth weight step (``grad_update_arch_param_every=5`` of the
official search configuration). Architecture Adam lr 1e-3, betas (0, 0.999), eps 1e-8, no weight
decay (the official ``arch_adam_*`` defaults). The official search first warms the weights up
for 40 epochs on single sampled paths, then searches 120: ``warmup_epochs=0.25``, that share of
a search (one cosine schedule of the weights' learning rate spans both here).

``gates="both"``: ProxylessNAS as AdvantageNAS's comparison code runs it (util.py ``multi_samp``
and ``proxyless_grad``): the two sampled candidates of an edge both pass (a 2-hot architecture),
in the weight steps as in the architecture steps, the same pair gradient, and no zero-gate rule.
"""
from __future__ import annotations

import math

import torch

from ..core.arch import Mix, Softmax
from ..core.strategy import AdamUpdate, Strategy
from ..errors import ArchgradError
from . import ADAM_OPTIONS, common, register
from .reinforce import OneHotSampler

GATES = ("one", "both")


class BinaryGates(OneHotSampler):
    joint_ok = False

    def __init__(self, gates: str = "one"):
        super().__init__()
        if gates not in GATES:
            raise ArchgradError(f"gates must be one of {', '.join(GATES)}, got {gates!r}")
        self.gates = gates
        self.pairs: dict[str, list[tuple[int, int]]] = {}
        #: per edge, whether the open gate of this step is a zero op (no update, as official)
        self.frozen: dict[str, list[bool]] = {}

    def arch_mix(self, ctx):
        dev = ctx.batch[0].device
        weights, active, pairs, ptilde = {}, {}, {}, {}
        self.frozen = {}
        for k, p in ctx.arch.probs_detached().items():
            zero = ctx.arch.groups[k].zero_mask
            frozen = []
            p = p.double().cpu()
            n_alive = int((p > 0).sum(-1).min())
            w = torch.zeros(p.shape)
            pk, act, pt = [], [], []
            for e in range(p.shape[0]):
                two = torch.multinomial(p[e], min(2, n_alive), replacement=False,
                                        generator=ctx.generator).tolist()
                if len(two) == 1:
                    two = two * 2
                q = p[e, two] / p[e, two].sum()
                if self.gates == "both":  # multi_samp: both sampled gates open
                    w[e, two] = 1.0
                    frozen.append(False)
                else:
                    c = int(torch.multinomial(q.float(), 1, generator=ctx.generator))
                    w[e, two[c]] = 1.0
                    frozen.append(bool(zero[two[c]]))
                pk.append((two[0], two[1]))
                act.append(tuple(dict.fromkeys(two)))
                pt.append(q)
            self.frozen[k] = frozen
            weights[k] = w.to(dev).requires_grad_(True)
            active[k], pairs[k], ptilde[k] = act, pk, torch.stack(pt)
        self.pairs = pairs
        return Mix(weights, active), (pairs, ptilde)

    def weight_mix(self, ctx):
        if self.gates == "one":
            return super().weight_mix(ctx)
        # the comparison code trains the weights on the same 2-hot draw as its theta steps
        dev = ctx.batch[0].device
        weights, active = {}, {}
        for k, p in ctx.arch.probs_detached().items():
            p = p.double().cpu()
            n = min(2, int((p > 0).sum(-1).min()))
            w = torch.zeros(p.shape)
            act = []
            for e in range(p.shape[0]):
                two = torch.multinomial(p[e], n, replacement=False,
                                        generator=ctx.generator).tolist()
                w[e, two] = 1.0
                act.append(tuple(two))
            weights[k], active[k] = w.to(dev), act
        return Mix(weights, active)

    def settings(self):
        return {"gates": self.gates}

    def grad_targets(self, ctx, mix, record):
        return [mix.weights[k] for k in record[0]]

    def arch_grads(self, ctx, mix, record, target_grads, loss):
        pairs, ptilde = record
        grads = {}
        for (k, pk), g in zip(pairs.items(), target_grads):
            theta = ctx.arch.theta[k]
            g = torch.zeros(theta.shape, dtype=torch.float64) if g is None \
                else g.detach().double().cpu()
            out = torch.zeros(theta.shape, dtype=torch.float64)
            for e, (a, b) in enumerate(pk):
                if a == b:
                    continue
                pair, q = (a, b), ptilde[k][e]
                for i in range(2):
                    for j in range(2):
                        out[e, pair[i]] += g[e, pair[j]] * q[j] * (float(i == j) - q[i])
            grads[k] = out.to(theta.device, theta.dtype)
        return grads

    def sample_of(self, record):
        return None  # a one-hot architecture is never evaluated in the architecture step


class ProxylessUpdate(AdamUpdate):
    """Adam, then the pair's logits shifted to keep sum(exp) over the pair (official rescale)."""

    def __init__(self, estimator: BinaryGates, lr, betas, weight_decay, eps, parameterization,
                 **kw):
        super().__init__(lr, betas, weight_decay, parameterization, eps=eps, **kw)
        self.estimator = estimator

    def step(self, grads, ctx=None):
        old = {k: self.arch.theta[k].detach().clone() for k in grads}
        frozen = {k: torch.tensor(v, dtype=torch.bool)
                  for k, v in self.estimator.frozen.items() if any(v)}
        saved = {}
        for k, rows in frozen.items():  # edges whose open gate is zero: no update at all
            grads[k] = grads[k].masked_fill(rows.to(grads[k].device)[:, None], 0.0)
            st = self.opt.state.get(self.arch.theta[k], {})
            saved[k] = {n: t[rows.to(t.device)].clone() for n, t in st.items()
                        if torch.is_tensor(t) and t.shape == old[k].shape}
        super().step(grads, ctx)
        with torch.no_grad():
            for k, rows in frozen.items():
                th = self.arch.theta[k]
                r = rows.to(th.device)
                th[r] = old[k][r]
                st = self.opt.state.get(th, {})
                for n, t in saved[k].items():
                    st[n][r] = t
            for k, pk in self.estimator.pairs.items():
                th = self.arch.theta[k]
                for e, (a, b) in enumerate(pk):
                    if a == b or (k in frozen and bool(frozen[k][e])):
                        continue
                    idx = [a, b]
                    offset = math.log(float(th[e, idx].exp().sum()) /
                                      float(old[k][e, idx].exp().sum()))
                    th[e, idx] -= offset
        return {}


    def settings(self):
        return {**super().settings(), "arch_eps": self.eps}


DEFAULTS = {"arch_lr": 1e-3, "arch_betas": (0.0, 0.999), "arch_weight_decay": 0.0,
            "arch_every": 5, "warmup_epochs": 0.25}
SOURCES = {"weights": "DARTS's, as the other strategies of AdvantageNAS's comparison",
           "arch": "ProxylessNAS official search arguments (arch_lr 1e-3, arch_adam_beta1 0, "
                   "beta2 0.999, eps 1e-8, arch_weight_decay 0, arch_init_ratio 1e-3)",
           "arch_every": "ProxylessNAS official grad_update_arch_param_every = 5",
           "warmup_epochs": "ProxylessNAS official imagenet_arch_search.py (warmup_epochs 40 "
                            "before n_epochs 120: a quarter of the search)",
           "gates": "'one': ProxylessNAS 'two' mode (one of the pair open); 'both': "
                    "AdvantageNAS's comparison code (util.py multi_samp)",
           "schedule": "ProxylessNAS §3.2: gates on held-out data, bi-level",
           "*": "ProxylessNAS (Cai et al. 2019)"}


@register("proxyless", family="gates", adam=True, defaults=DEFAULTS, sources=SOURCES,
          help={"arch_eps": "Adam epsilon of the architecture optimizer",
                "gates": "'one' (ProxylessNAS: one of the two sampled gates open) or 'both' "
                         "(AdvantageNAS's comparison code: both open, 2-hot)"})
def proxyless(arch_eps: float = 1e-8, gates: str = "one", **options) -> Strategy:
    """ProxylessNAS: binarised path gates, two sampled paths per edge, BinaryConnect gradient."""
    est = BinaryGates(gates)
    o = {k: options.pop(k, ADAM_OPTIONS[k]) for k in ADAM_OPTIONS}
    update = ProxylessUpdate(est, o["arch_lr"], o["arch_betas"], o["arch_weight_decay"],
                             arch_eps, Softmax(o["init_scale"]), grad_clip=o["arch_grad_clip"],
                             lr_schedule=o["arch_lr_schedule"])
    return Strategy("proxyless", est, update, bilevel=True, arch_first=False, **common(options))
