"""Random search with weight sharing (Li & Talwalkar, UAI 2019): train the supernet on uniformly
sampled architectures (one op per edge, only it computed); at the end rank ``candidates`` random
architectures by their shared-weight validation accuracy on a subset of the validation split,
re-score the best five on all of it, and return the best."""
from __future__ import annotations

from ..arch import Softmax
from ..sampling import onehot, uniform_indices
from ..strategy import ArchStepResult, Estimator, NoUpdate, Strategy
from . import common, register


class UniformSampler(Estimator):
    dense = False
    joint_ok = False

    def weight_mix(self, ctx):
        alive = {k: ctx.arch.alive(k) for k in ctx.arch.labels()}
        return onehot(uniform_indices(alive, ctx.generator), ctx.arch.groups,
                      ctx.batch[0].device)

    def arch_step(self, ctx):
        return ArchStepResult({})


@register("random-ws", family="baseline")
def random_ws(candidates: int = 100, **options) -> Strategy:
    """Random search with weight sharing: uniform architectures train the supernet, then the best
    of K random architectures by shared-weight validation accuracy."""
    update = NoUpdate()
    update.parameterization = Softmax(0.0)
    return Strategy("random-ws", UniformSampler(), update, bilevel=True, arch_first=False,
                    rank_candidates=candidates, **common(options))
