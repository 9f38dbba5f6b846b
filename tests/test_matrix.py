"""Every registered strategy on every registered space: one search step, derive, build, run.

New strategies and spaces are picked up from the registries with no new test code.
"""
import pytest
import torch

from archgrad.methods import STRATEGIES, make_strategy
from archgrad.search import with_space_defaults
from archgrad.spaces import SPACES, get_space

PAIRS = [(st, sp) for st in STRATEGIES.names() for sp in SPACES.names()]


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("strategy,space", PAIRS)
def test_one_step_derive_build_run(strategy, space):
    torch.manual_seed(0)
    strat = make_strategy(strategy)
    sp = get_space(space, **with_space_defaults(SPACES.get(space), SPACES.get(space).tiny, strat))
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=0, costs=sp.op_costs() if strat.needs_costs else None)
    g = torch.Generator().manual_seed(0)
    tb, vb = sp.example_batch(8, g), sp.example_batch(8, g)
    theta0, w0 = _snapshot(strat.arch), _snapshot(model)
    strat.set_lr(0, 10)
    stats = strat.step(tb, vb, loss_fn=sp.loss, epoch=strat.first_arch_epoch(10), epochs=10,
                       step=0, steps_per_epoch=1)
    loss = stats.get("train_loss", stats.get("arch_loss"))
    assert loss is not None or strat.rank_candidates  # random search trains weights only
    if loss is not None:
        assert torch.isfinite(torch.as_tensor(loss))
    # a search step changes the shared weights (where the space trains them), and the
    # architecture unless the strategy leaves it alone by design (random search)
    if any(p.requires_grad for p in model.parameters()):
        assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))
    moved = any(not torch.equal(a, b) for a, b in zip(theta0, strat.arch.parameters()))
    assert moved == (type(strat.update).__name__ != "NoUpdate")
    for t in strat.arch.parameters():
        assert torch.isfinite(t).all()
    probs = strat.arch.probs_detached()
    node_level = strat.update.parameterization.name == "node-softmax"  # I-DARTS
    for label, p in probs.items():
        assert (p >= 0).all()
        if node_level:  # one distribution per node over its incoming (edge, op) pairs
            for rows in strat.arch.groups[label].incoming().values():
                assert p[rows].sum().item() == pytest.approx(1.0, abs=1e-5), label
        else:
            assert torch.allclose(p.sum(-1), torch.ones(p.shape[0]), atol=1e-5), label
    geno = sp.derive(probs, **strat.derive_options)
    assert sp.parse(str(geno)) == geno
    net = sp.build(geno)
    x, _ = sp.example_batch(2, g)
    out = net(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    # the supernet under the derived genotype's one-hot mix runs too
    y = model(x, sp.discrete_mix(geno))
    assert torch.isfinite(y).all()
