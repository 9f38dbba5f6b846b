"""Every registered strategy on every registered space: several steps over several seeds, with
the architecture concentrated on each candidate in turn so that sampled candidates cover every
op on every edge (normal and reduction cells, stride-1 and stride-2 edges); losses, architecture
gradients, weights and parameters stay finite; then derive, build and run.

New strategies and spaces are picked up from the registries with no new test code.
"""
import pytest
import torch

from archgrad.methods import STRATEGIES, make_strategy
from archgrad.search import with_space_defaults
from archgrad.spaces import SPACES, get_space

PAIRS = [(st, sp) for st in STRATEGIES.names() for sp in SPACES.names()]
SEEDS = (0, 1)


def _finite(v) -> bool:
    return bool(torch.isfinite(torch.as_tensor(v, dtype=torch.float64)).all())


def _record_mixes(model):
    """Per (label, edge): the candidates a forward pass of the supernet computed or sampled."""
    seen: dict[tuple[str, int], set[int]] = {}
    orig = model.forward

    def forward(x, mix):
        m = mix() if callable(mix) else mix
        for label, w in m.weights.items():
            act = m.active.get(label)
            for e in range(w.shape[0]):
                cands = act[e] if act is not None else [
                    k for k in range(w.shape[1]) if float(w[e, k]) != 0]
                seen.setdefault((label, e), set()).update(cands)
        return orig(x, m)

    model.forward = forward
    return seen


def _smallest(space: str) -> dict:
    """The space's tiny size, with two intermediate nodes per cell where the space takes the
    number: on the DARTS cell that still holds every kind of edge (from the two input cells,
    stride 2 in a reduction cell, and from an intermediate node, stride 1) at a third of the
    edges of four nodes."""
    opts, takes = dict(SPACES.get(space).tiny), SPACES.get(space).options
    if "steps" in takes:
        opts["steps"] = 2
        if "multiplier" in takes:
            opts["multiplier"] = 2  # the cell's output concatenates the nodes it has
    return opts


@pytest.mark.parametrize("strategy,space", PAIRS)
def test_every_candidate_on_every_edge(strategy, space):
    covered: dict[tuple[str, int], set[int]] = {}
    for seed in SEEDS:
        torch.manual_seed(seed)
        strat = make_strategy(strategy)
        sp = get_space(space, **with_space_defaults(SPACES.get(space), _smallest(space), strat))
        model = sp.supernet()
        strat.setup(sp.choices(), model, seed=seed,
                    costs=sp.op_costs() if strat.needs_costs else None)
        seen = _record_mixes(model)
        g = torch.Generator().manual_seed(seed)
        epochs = 10
        epoch = strat.first_arch_epoch(epochs)
        strat.set_lr(epoch, epochs)
        # one iteration with an architecture step per candidate (random search: several, its
        # uniform samples are not steered by the distribution)
        n_steps = strat.arch_every * (4 if strat.rank_candidates else 1)
        groups = sp.groups()
        n_cand = max(grp.shape[1] for grp in groups.values())
        for k in range(n_cand):
            # the distribution concentrated on candidate k on every edge (where it exists)
            strat.arch.concentrate({label: [min(k, grp.shape[1] - 1)] * grp.shape[0]
                                    for label, grp in groups.items()})
            for step in range(n_steps):
                tb, vb = sp.example_batch(8, g), sp.example_batch(8, g)
                stats = strat.step(tb, vb, loss_fn=sp.loss, epoch=epoch, epochs=epochs,
                                   step=step, steps_per_epoch=n_steps)
                for key in ("train_loss", "arch_loss"):
                    if key in stats:
                        assert _finite(stats[key]), (key, k, step, seed)
                for label, grad in (stats.get("_grads") or {}).items():
                    assert _finite(grad), (label, k, step, seed)
            for p in list(model.parameters()) + list(strat.arch.parameters()):
                assert _finite(p.detach()), (k, seed)
        for key, cands in seen.items():
            covered.setdefault(key, set()).update(cands)
        # the distribution derives, builds and runs
        geno = strat.derive(sp)
        assert sp.parse(str(geno)) == geno
        net = sp.build(geno)
        x, y = sp.example_batch(2, g)
        out = net(x)
        out = out[0] if isinstance(out, tuple) else out
        assert _finite(sp.loss(out, y).detach())
        if isinstance(out, torch.Tensor):
            assert out.shape[0] == 2 and torch.isfinite(out).all()
        assert _finite(sp.loss(model(x, sp.discrete_mix(geno)), y).detach())
    # every candidate was computed (or, for sampling strategies, sampled) on every edge; a
    # dense strategy never computes the zero op
    dense = strat.estimator.dense
    if not any(p.requires_grad for p in model.parameters()) and strat.rank_candidates:
        return  # fixed weights and no architecture to learn: no forward pass in a search step
    for label, grp in sp.groups().items():
        want = {k for k, c in enumerate(grp.candidates) if not (dense and c.zero)}
        for e in range(grp.shape[0]):
            assert want <= covered.get((label, e), set()), (label, e, covered.get((label, e)))


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_a_step_moves_weights_and_architecture(strategy):
    """One iteration with an architecture step changes the shared weights and, unless the
    strategy leaves it alone by design (random search), the architecture."""
    torch.manual_seed(0)
    strat = make_strategy(strategy)
    sp = get_space("nb201", **with_space_defaults(SPACES.get("nb201"), {"C": 4, "N": 1}, strat))
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=0)
    g = torch.Generator().manual_seed(0)
    theta0 = [p.detach().clone() for p in strat.arch.parameters()]
    w0 = [p.detach().clone() for p in model.parameters()]
    epoch = strat.first_arch_epoch(10)
    strat.set_lr(epoch, 10)
    for step in range(strat.arch_every):
        strat.step(sp.example_batch(8, g), sp.example_batch(8, g), loss_fn=sp.loss, epoch=epoch,
                   epochs=10, step=step, steps_per_epoch=strat.arch_every)
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))
    moved = any(not torch.equal(a, b) for a, b in zip(theta0, strat.arch.parameters()))
    assert moved == (type(strat.update).__name__ != "NoUpdate")
    probs = strat.arch.probs_detached()
    node_level = strat.update.parameterization.name == "node-softmax"  # I-DARTS
    for label, p in probs.items():
        assert (p >= 0).all()
        if strat.update.parameterization.name == "sigmoid":  # FairDARTS: independent weights
            assert (p <= 1).all(), label
        elif node_level:  # one distribution per node over its incoming (edge, op) pairs
            for rows in strat.arch.groups[label].incoming().values():
                assert p[rows].sum().item() == pytest.approx(1.0, abs=1e-5), label
        else:
            assert torch.allclose(p.sum(-1), torch.ones(p.shape[0]), atol=1e-5), label
