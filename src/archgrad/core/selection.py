"""Perturbation-based architecture selection (DARTS-PT, Wang, Cheng, Chen, Tang & Hsieh, ICLR
2021, Algorithm 1): a derivation any strategy's supernet can take (``derive="perturbation"``).

Edge by edge, in a random order, every candidate still on the edge is removed in turn (its
mixing weight set to 0) and the supernet's validation accuracy measured; the edge keeps the
candidate whose removal drops the accuracy most (the release's ``argmin`` over the accuracies
without each op), its weights becoming one-hot, and the supernet's weights are fine-tuned for
``pt_tune_epochs`` between two decisions. On a space whose nodes take a fixed number of inputs
(the DARTS cell: 2), the topology is selected the same way afterwards, node by node: the inputs
whose removal drops the accuracy most are kept. A task without accuracy (language models, the
toy regression) scores by minus the validation loss.
"""
from __future__ import annotations

import itertools

import torch

from .arch import Mix

#: the derivation's options, common to every strategy (DARTS-PT §4 / the release's
#: proj_intv: fine-tuning between two decisions)
PT_DEFAULTS = {"pt_tune_epochs": 5.0, "pt_examples": 0}
PT_HELP = {"pt_tune_epochs": "DARTS-PT: epochs of weight fine-tuning between two decisions",
           "pt_examples": "DARTS-PT: validation examples per accuracy measurement (0: all)"}


def _mix(weights: dict, arch) -> Mix:
    active = {}
    for label, g in arch.groups.items():
        alive = arch.alive(label).cpu()
        w = weights[label].cpu()
        skip = g.skip_mask
        active[label] = [tuple(k for k in range(w.shape[1])
                               if alive[e, k] and not skip[k] and float(w[e, k]) != 0.0)
                         for e in range(w.shape[0])]
    return Mix({k: v for k, v in weights.items()}, active)


def _score(task, model, weights, arch, examples) -> float:
    ev = task.evaluate(model, _mix(weights, arch), limit=examples or None)
    return float(ev["acc"]) if "acc" in ev else -float(ev["loss"])


def _tune(task, model, strategy, weights, arch, steps: int) -> None:
    """Weight steps under the partly discretized supernet (the architecture fixed)."""
    if steps <= 0 or not strategy.weight_params:
        return
    mix = _mix(weights, arch)
    model.train()
    batches = itertools.chain.from_iterable(task.weight_batches(e) for e in itertools.count())
    for _, batch in zip(range(steps), batches):
        x, y = batch
        strategy.weight_opt.zero_grad(set_to_none=True)
        task.loss_fn(model(x, mix), y).backward()
        strategy._clip_and_step()


def perturbation_select(space, model, strategy, task, *, tune_epochs: float = 5.0,
                        examples: int = 0, seed: int = 0) -> tuple:
    """DARTS-PT's selection on ``model``'s supernet: returns (genotype, record of every
    decision: the edge, each candidate's accuracy without it, the kept one)."""
    arch = strategy.arch
    gen = torch.Generator().manual_seed(seed + 4241)
    weights = {k: v.detach().clone() for k, v in arch.probs_detached().items()}
    steps = int(round(tune_epochs * task.steps_per_epoch))
    decisions = []
    was = model.training
    edges = [(label, e) for label, g in arch.groups.items() for e in range(g.shape[0])]
    order = [edges[i] for i in torch.randperm(len(edges), generator=gen).tolist()]
    for label, e in order:
        cands = [k for k in range(weights[label].shape[1]) if bool(arch.alive(label)[e, k])]
        if len(cands) > 1:
            accs = {}
            for k in cands:
                w = {kk: v.clone() for kk, v in weights.items()}
                w[label][e, k] = 0.0
                accs[k] = _score(task, model, w, arch, examples)
            keep = min(cands, key=lambda k: (accs[k], k))  # its removal hurts most
        else:
            keep, accs = cands[0], {}
        row = torch.zeros_like(weights[label][e])
        row[keep] = 1.0
        weights[label][e] = row
        decisions.append({"edge": [label, e], "kept": arch.groups[label].ops[keep],
                          "acc_without": {arch.groups[label].ops[k]: a for k, a in accs.items()}})
        _tune(task, model, strategy, weights, arch, steps)
    n_in = getattr(space, "inputs_per_node", None)
    if n_in:  # topology: per node its n inputs whose removal hurts most
        for label, g in arch.groups.items():
            inc = list(g.incoming().items())
            for node, es in (inc[i] for i in torch.randperm(len(inc), generator=gen).tolist()):
                if len(es) <= n_in:
                    continue
                accs = {}
                for e in es:
                    w = {kk: v.clone() for kk, v in weights.items()}
                    w[label][e] = 0.0
                    accs[e] = _score(task, model, w, arch, examples)
                kept = sorted(es, key=lambda e: (accs[e], e))[:n_in]
                for e in es:
                    if e not in kept:
                        weights[label][e] = 0.0
                decisions.append({"node": [label, node], "inputs": sorted(kept),
                                  "acc_without": {str(e): a for e, a in accs.items()}})
                _tune(task, model, strategy, weights, arch, steps)
    model.train(was)
    return space.derive(weights), {"decisions": decisions, "tune_steps": steps}
