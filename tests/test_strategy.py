"""Semantics of the step schedule, shared by all strategies."""
import torch

from archgrad.methods import make_strategy
from archgrad.spaces import get_space


def _setup(name, **kw):
    torch.manual_seed(0)
    sp = get_space("nb201", C=4, N=1)
    model = sp.supernet()
    st = make_strategy(name, **kw)
    st.setup(sp.choices(), model, seed=0)
    st.set_lr(0, 1)
    g = torch.Generator().manual_seed(0)
    return sp, model, st, sp.example_batch(8, g), sp.example_batch(8, g)


def test_bilevel_architecture_step_uses_the_validation_batch():
    sp, model, st, tb, vb = _setup("darts")
    seen = []
    orig = st.estimator.arch_step
    st.estimator.arch_step = lambda ctx: (seen.append(ctx.batch), orig(ctx))[1]
    st.step(tb, vb, loss_fn=sp.loss, epoch=0, epochs=1, step=0, steps_per_epoch=1)
    assert seen[0] is vb


def test_architecture_step_leaves_weights_and_weight_step_leaves_architecture():
    from archgrad.core.strategy import StepContext
    sp, model, st, tb, vb = _setup("darts")
    ctx = StepContext(model, st.arch, sp.loss, vb, tb, st.weight_params, st.lr, 0, 1, 0, 1,
                      st.generator)
    w0 = [p.detach().clone() for p in model.parameters()]
    st.arch_step(ctx)
    assert all(torch.equal(a, b) for a, b in zip(w0, model.parameters()))
    assert all(p.grad is None for p in model.parameters())  # no weight gradients computed
    a0 = st.arch.theta["cell"].detach().clone()
    st.weight_step(ctx)
    assert torch.equal(a0, st.arch.theta["cell"])


def test_single_level_uses_one_batch_and_one_backward():
    sp, model, st, tb, vb = _setup("darts-single")
    calls = []
    orig = model.forward
    model.forward = lambda x, mix: (calls.append(x), orig(x, mix))[1]
    st.step(tb, vb, loss_fn=sp.loss, epoch=0, epochs=1, step=0, steps_per_epoch=1)
    assert len(calls) == 1 and calls[0] is tb[0]


def test_darts_arch_update_is_adam_with_paper_defaults():
    sp, model, st, tb, vb = _setup("darts")
    opt = st.update.opt
    g = opt.param_groups[0]
    assert g["lr"] == 3e-4 and g["betas"] == (0.5, 0.999) and g["weight_decay"] == 1e-3
    w = st.weight_opt.param_groups[0]
    assert w["momentum"] == 0.9 and w["weight_decay"] == 3e-4
    assert st.weights_cfg.lr == 0.025 and st.weights_cfg.lr_min == 0.001
    assert st.weights_cfg.grad_clip == 5.0
