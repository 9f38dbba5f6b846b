"""Random search with weight sharing (Li & Talwalkar, UAI 2019): train the supernet on uniformly
sampled architectures (one op per edge, only it computed); at the end rank ``candidates`` random
architectures by their shared-weight validation accuracy on a subset of the validation split,
re-score the best five on all of it, and return the best (``selection="li-talwalkar"``). With
``selection="one-batch"``, NAS-Bench-201's own RSPS (AutoDL-Projects exps/algos/RANDOM-NAS.py,
``search_find_best``): each of the ``candidates`` cells scored on one validation batch of its own
(the next batch of a shuffled pass, at the search's batch size), the supernet in eval mode as it
stands, and the most accurate one kept."""
from __future__ import annotations

import torch

from ..core.arch import Softmax
from ..core.sampling import onehot, uniform_indices
from ..core.strategy import ArchStepResult, Estimator, NoUpdate, Strategy
from ..errors import ArchgradError
from . import common, register


class UniformSampler(Estimator):
    dense = False
    joint_ok = False
    eval_mode = "one architecture sampled uniformly per validation batch"
    eval_bn = "batch"

    def eval_mix(self, arch, generator=None, epoch=0, epochs=1):
        gen = generator or torch.Generator().manual_seed(0)
        dev = next(iter(arch.theta.values())).device
        alive = {k: arch.alive(k) for k in arch.labels()}
        return lambda: onehot(uniform_indices(alive, gen), arch.groups, dev)

    def weight_mix(self, ctx):
        alive = {k: ctx.arch.alive(k) for k in ctx.arch.labels()}
        return onehot(uniform_indices(alive, ctx.generator), ctx.arch.groups,
                      ctx.batch[0].device)

    def arch_step(self, ctx):
        return ArchStepResult({})


@register("random-ws", family="baseline", sources={
    "weights": "DARTS's (Li & Talwalkar §4.1 train the shared weights as DARTS does)",
    "arch": "no architecture parameters (uniform sampling)",
    "schedule": "Li & Talwalkar §4.1: DARTS's data split; the architecture half is used for "
                "the final ranking", "candidates": "Li & Talwalkar §4.1 (evaluate 1000 "
                "architectures; 100 here, then the best 5 again on all validation data); "
                "NAS-Bench-201 RANDOM-NAS.py --select_num 100",
    "selection": "'li-talwalkar': Li & Talwalkar §4.1; 'one-batch': NAS-Bench-201's RSPS "
                 "(RANDOM-NAS.py search_find_best: one validation batch per cell)",
    "*": "random search with weight sharing (Li & Talwalkar 2019)"},
    help={"candidates": "random architectures ranked at the end",
          "selection": "'li-talwalkar' (rank on a subset, re-score the best 5 on all "
                       "validation data) or 'one-batch' (NAS-Bench-201's: one validation batch "
                       "per cell)"})
def random_ws(candidates: int = 100, selection: str = "li-talwalkar", **options) -> Strategy:
    """Random search with weight sharing: uniform architectures train the supernet, then the best
    of K random architectures by shared-weight validation accuracy."""
    update = NoUpdate()
    update.parameterization = Softmax(0.0)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ArchgradError(f"candidates must be a positive integer, got {candidates!r}")
    if selection not in SELECTIONS:
        raise ArchgradError(f"selection must be one of {', '.join(SELECTIONS)}, "
                            f"got {selection!r}")
    strat = Strategy("random-ws", UniformSampler(), update, bilevel=True, arch_first=False,
                     rank_candidates=candidates, **common(options))
    strat.rank_selection = selection
    return strat


SELECTIONS = ("li-talwalkar", "one-batch")
