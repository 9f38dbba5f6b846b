"""Mechanics of the individual estimators and update rules."""
import math

import pytest
import torch

from archgrad.core.arch import Mix
from archgrad.core.strategy import StepContext
from archgrad.methods import STRATEGIES, make_strategy
from archgrad.spaces import get_space


def _setup(name, space="nb201", seed=0, **opts):
    torch.manual_seed(seed)
    # the reference (per edge, per op) cell, whose candidate ops can be counted one by one
    sp = get_space(space, **get_space(space).tiny) if space != "nb201" else \
        get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet()
    st = make_strategy(name, **opts)
    costs = sp.op_costs() if st.needs_costs else None
    st.setup(sp.choices(), model, seed=seed, costs=costs)
    st.set_lr(0, 10)
    g = torch.Generator().manual_seed(seed)
    tb, vb = sp.example_batch(8, g), sp.example_batch(8, g)
    return sp, model, st, tb, vb


def _ctx(sp, model, st, batch, train_batch, epoch=0, epochs=10):
    return StepContext(model, st.arch, sp.loss, batch, train_batch, st.weight_params, st.lr,
                       epoch, epochs, 0, 1, st.generator)


class OpCounter:
    """Counts, per forward pass of the supernet and per search cell and edge, which candidates
    were computed."""

    def __init__(self, model):
        self.passes = []
        self.handles = [model.register_forward_pre_hook(lambda *_: self.passes.append({}))]
        for ci, cell in enumerate(m for m in model.modules() if type(m).__name__ == "SearchCell"):
            for e, mixed in enumerate(cell.edges):
                for k, op in enumerate(mixed.ops):
                    self.handles.append(op.register_forward_hook(self._hook(ci, e, k)))

    def _hook(self, ci, e, k):
        def f(*_):
            self.passes[-1].setdefault((ci, e), set()).add(k)
        return f

    @property
    def calls(self):
        return self.passes

    def max_per_edge(self):
        return max((len(v) for p in self.passes for v in p.values()), default=0)

    def reset(self):
        self.passes = []


SPARSE = [n for n in STRATEGIES.names() if not make_strategy(n).estimator.dense]


@pytest.mark.parametrize("name", SPARSE)
def test_sparse_strategies_compute_only_the_sampled_ops(name):
    sp, model, st, tb, vb = _setup(name)
    counter = OpCounter(model)
    ctx = _ctx(sp, model, st, vb, tb)
    st.weight_step(ctx)
    assert counter.max_per_edge() <= 1, counter.calls
    counter.reset()
    st.arch_step(ctx)
    limit = 2 if name == "proxyless" else 1
    assert counter.max_per_edge() <= limit, counter.calls


def test_dense_strategies_compute_every_nonzero_candidate():
    sp, model, st, tb, vb = _setup("darts")
    counter = OpCounter(model)
    st.weight_step(_ctx(sp, model, st, vb, tb))
    # 'none' is never computed; the four others are
    assert counter.max_per_edge() == 4
    assert all(0 not in v for p in counter.passes for v in p.values())


# ---- SNAS -------------------------------------------------------------------------------------
def test_snas_relaxation_and_temperature_schedule():
    sp, model, st, tb, vb = _setup("snas")
    est = st.estimator
    temps = [est.temperature(_ctx(sp, model, st, vb, tb, epoch=e, epochs=5)) for e in range(5)]
    # the official Temp_Scheduler: min + (init - min) (1 - (e + 1) / E), stepped before epoch e
    assert temps == pytest.approx([0.03 + 0.97 * (1 - (e + 1) / 5) for e in range(5)])
    assert temps[-1] == pytest.approx(0.03)
    mix, idx = est.arch_mix(_ctx(sp, model, st, vb, tb))
    z = mix.weights["cell"]
    assert torch.allclose(z.sum(-1), torch.ones(6)) and z.requires_grad
    assert idx["cell"].tolist() == z.argmax(-1).tolist()


def test_snas_resource_gradient_is_the_per_edge_policy_gradient():
    """With the loss's pathwise gradient subtracted, what remains is
    eta * C_e(k_e) * (onehot(k_e) - p_e) per edge (eq. 11 by policy gradient)."""
    sp, model, st, tb, vb = _setup("snas", resource_weight=0.5)
    sp0, model0, st0, _, _ = _setup("snas")
    est = st.estimator
    ctx = _ctx(sp, model, st, tb, tb)
    mix, idx = est.arch_mix(ctx)
    out, loss = ctx.forward(mix)
    tg = torch.autograd.grad(loss, [st.arch.theta["cell"]])
    with_cost = est.arch_grads(ctx, mix, idx, tg, loss)["cell"]
    p = st.arch.probs_detached()["cell"]
    k = torch.as_tensor(idx["cell"])
    c = est.costs["cell"][torch.arange(6), k]
    expected = tg[0] + 0.5 * c[:, None] * (torch.nn.functional.one_hot(k, 5) - p)
    assert torch.allclose(with_cost, expected, atol=1e-6)


def test_snas_resource_levels_and_costs():
    sp = get_space("nb201")
    c = sp.op_costs()["cell"]
    ops = sp.choices()[0].ops
    none, skip, c1, c3, pool = (c[0, ops.index(o)] for o in ops)
    assert none.sum() == 0
    assert skip[0] == 0 and skip[1] == 0 and skip[2] > 0       # MAC only
    assert pool[0] == 0 and pool[1] == c3[1]                    # eq. 38: H W f k I O
    assert c3[0] == 9 * c1[0]                                   # f k I O
    # parameters of a 3x3 conv summed over 5 cells per stage at 16, 32, 64 channels
    assert c3[0] == 9 * 5 * (16 ** 2 + 32 ** 2 + 64 ** 2)
    with pytest.raises(Exception, match="resource_weight"):
        make_strategy("snas", resource_weight="extreme")


# ---- GDAS -------------------------------------------------------------------------------------
def test_gdas_forward_is_the_sampled_architecture_and_tau_decays():
    sp, model, st, tb, vb = _setup("gdas")
    est = st.estimator
    ctx = _ctx(sp, model, st, vb, tb)
    mix, idx = est.arch_mix(ctx)
    w = mix.weights["cell"]
    assert torch.equal(w.detach(), torch.nn.functional.one_hot(torch.tensor(idx["cell"]), 5).float())
    model.eval()
    y = model(vb[0], mix)
    y_discrete = model(vb[0], sp.discrete_mix(sp.genotype_from_indices(idx)))
    assert torch.allclose(y, y_discrete, atol=1e-5)
    taus = [est.tau(_ctx(sp, model, st, vb, tb, epoch=e, epochs=11)) for e in range(11)]
    assert taus[0] == 10.0 and taus[-1] == pytest.approx(0.1)


def test_gdas_straight_through_gradient_flows_to_every_logit():
    sp, model, st, tb, vb = _setup("gdas")
    res = st.estimator.arch_step(_ctx(sp, model, st, vb, tb))
    g = res.grads["cell"]
    assert (g != 0).sum() > 6  # not only the sampled entries: the soft sample's Jacobian


# ---- REINFORCE / PARSEC ------------------------------------------------------------------------
def test_reinforce_moving_average_baseline():
    sp, model, st, tb, vb = _setup("reinforce", baseline_coef=0.5)
    est = st.estimator
    assert est.advantage(-2.0) == 0.0          # the first reward sets the baseline
    assert est.advantage(-1.0) == pytest.approx(1.0)
    assert float(est.baseline) == pytest.approx(-1.5)


def test_reinforce_gradient_is_advantage_times_score():
    sp, model, st, tb, vb = _setup("reinforce", baseline=False)
    gen_state = st.generator.get_state()
    res = st.estimator.arch_step(_ctx(sp, model, st, vb, tb))
    (idx, reward), = res.samples
    p = st.arch.probs_detached()["cell"]
    a = torch.nn.functional.one_hot(torch.tensor(idx["cell"]), 5).float()
    assert torch.allclose(res.grads["cell"], -reward * (a - p), atol=1e-6)
    st.generator.set_state(gen_state)


def test_parsec_uses_several_samples_with_importance_weights():
    sp, model, st, tb, vb = _setup("parsec", samples=4)
    res = st.estimator.arch_step(_ctx(sp, model, st, vb, tb))
    assert len(res.samples) == 4
    losses = torch.tensor([-r for _, r in res.samples], dtype=torch.float64)
    w = torch.softmax(-8 * losses, 0)  # likelihood of the batch of 8: minus the summed loss
    p = st.arch.probs_detached()["cell"].double()
    expected = -sum(wk * (torch.nn.functional.one_hot(torch.tensor(d["cell"]), 5) - p)
                    for wk, (d, _) in zip(w, res.samples))
    assert torch.allclose(res.grads["cell"].double(), expected, atol=1e-6)


# ---- AdvantageNAS -----------------------------------------------------------------------------
def test_advantage_is_minus_the_gradient_of_the_sampled_weight():
    sp, model, st, tb, vb = _setup("advantage")
    est = st.estimator
    ctx = _ctx(sp, model, st, vb, tb)
    mix, idx = est.arch_mix(ctx)
    out, loss = ctx.forward(mix)
    (g,) = torch.autograd.grad(loss, [mix.weights["cell"]])
    adv = est.advantages(st.arch, idx, [g])["cell"]
    zero = sp.choices()[0].zero_mask
    for e, j in enumerate(idx["cell"]):
        if not zero[j]:
            assert adv[e] == pytest.approx(-float(g[e, j]), rel=1e-6)


def test_advantage_of_a_sampled_zero_op_is_the_worst_moving_average():
    sp, model, st, tb, vb = _setup("advantage")
    est = st.estimator
    est.ema_cell.copy_(torch.tensor([[0.0, 0.3, -0.2, 0.1, 0.5]] * 6, dtype=torch.float64))
    g = torch.zeros(6, 5)
    idx = {"cell": [0, 1, 0, 2, 0, 3]}  # 'none' sampled on edges 0, 2, 4
    g[1, 1], g[3, 2], g[5, 3] = -1.0, 2.0, 0.0
    adv = est.advantages(st.arch, idx, [g])["cell"]
    # the other ops' moving averages after this step's update; worst = the minimum
    assert adv[0] == pytest.approx(-0.2) and adv[2] == pytest.approx(-0.2)
    assert adv[1] == pytest.approx(1.0) and adv[3] == pytest.approx(-2.0)
    assert est.ema_cell[3, 2] == pytest.approx(0.95 * -0.2 + 0.05 * -2.0)
    assert est.ema_cell[0, 0] == 0.0  # the zero op's own entry is never updated


# ---- ProxylessNAS -----------------------------------------------------------------------------
def test_proxyless_binary_gate_gradient_and_rescale():
    sp, model, st, tb, vb = _setup("proxyless")
    est = st.estimator
    ctx = _ctx(sp, model, st, vb, tb)
    mix, record = est.arch_mix(ctx)
    pairs, ptilde = record
    for e, act in enumerate(mix.active["cell"]):
        assert len(act) == 2 and set(act) == set(pairs["cell"][e])
        assert mix.weights["cell"][e].sum() == 1 and mix.weights["cell"][e, list(act)].sum() == 1
    out, loss = ctx.forward(mix)
    (g,) = torch.autograd.grad(loss, [mix.weights["cell"]])
    grads = est.arch_grads(ctx, mix, record, [g], loss)["cell"]
    for e, (a, b) in enumerate(pairs["cell"]):
        q0, q1 = (float(v) for v in ptilde["cell"][e])
        ga, gb = float(g[e, a]), float(g[e, b])
        # BinaryConnect: dL/dalpha_i = sum_j dL/dg_j q_j (delta_ij - q_i)
        assert float(grads[e, a]) == pytest.approx(ga * q0 * (1 - q0) - gb * q1 * q0, abs=1e-6)
        others = [k for k in range(5) if k not in (a, b)]
        assert (grads[e, others] == 0).all()
    # the rescale keeps the probabilities of the candidates outside the pair
    p_before = st.arch.probs_detached()["cell"].clone()
    st.update.step({"cell": grads})
    p_after = st.arch.probs_detached()["cell"]
    for e, (a, b) in enumerate(pairs["cell"]):
        others = [k for k in range(5) if k not in (a, b)]
        assert torch.allclose(p_before[e, others], p_after[e, others], atol=1e-6)
    assert st.update.opt.param_groups[0]["betas"] == (0.0, 0.999)


# ---- NASP -------------------------------------------------------------------------------------
def test_nasp_stays_in_the_box_and_forwards_the_projection():
    sp, model, st, tb, vb = _setup("nasp", arch_lr=0.3)
    for i in range(5):
        st.step(tb, vb, loss_fn=sp.loss, epoch=0, epochs=10, step=i, steps_per_epoch=5)
        t = st.arch.theta["cell"]
        assert (t >= 0).all() and (t <= 1).all()
    counter = OpCounter(model)
    st.arch_step(_ctx(sp, model, st, vb, tb))
    assert counter.max_per_edge() == 4  # dense architecture step
    mix = st.estimator.eval_mix(st.arch)
    assert mix.weights["cell"].sum() == 6  # one-hot argmax


# ---- random search with weight sharing --------------------------------------------------------
def test_random_ws_ranks_random_architectures_at_the_end():
    import archgrad
    res = archgrad.search(strategy="random-ws", dataset="synthetic", epochs=1, C=4, N=1,
                          candidates=6, device="cpu")
    assert res.final["derive"] == "rank-random"
    rk = res.final["ranking"]
    assert rk["candidates"] == 6 and str(res.genotype) == rk["top"][0][0]
    scores = [s for _, s in rk["top"]]
    assert scores == sorted(scores, reverse=True)


def test_process_best_returns_the_best_sampled_architecture():
    import archgrad
    res = archgrad.search(strategy="reinforce", dataset="synthetic", epochs=1, C=4, N=1,
                          derive="process-best", device="cpu")
    assert res.final["derive"] == "process-best"
    assert res.history[-1]["process_best"] == str(res.genotype)


def test_uniform_mix_helpers_are_normalised():
    sp, model, st, tb, vb = _setup("random-ws")
    p = st.arch.probs_detached()["cell"]
    assert torch.allclose(p, torch.full((6, 5), 0.2))
    assert math.isclose(float(Mix.onehot({"cell": [1] * 6}, {"cell": sp.choices()[0]})
                              .weights["cell"].sum()), 6.0)



def _amp_run(name, seed, scale):
    """A few iterations of ``name`` after its warm-up, in fp32 (``scale`` None) or under fp16
    autocast with the weights' loss scaler starting at ``scale`` (as the loop sets them); the
    weights' and the architecture's changes."""
    sp, model, st, tb, vb = _setup(name, seed=seed)
    if scale is not None:
        st.amp, st.scaler = torch.float16, torch.amp.GradScaler("cpu", init_scale=scale)
    w0 = [p.detach().clone() for p in st.weight_params]
    a0 = [p.detach().clone() for p in st.arch.parameters()]
    epochs = 10
    epoch = min(st.warmup(epochs), epochs - 1)
    for i in range(st.arch_every):
        st.step(tb, vb, loss_fn=sp.loss, epoch=epoch, epochs=epochs, step=i, steps_per_epoch=10)
    dw = torch.cat([(p.detach() - q).flatten() for p, q in zip(st.weight_params, w0)])
    da = torch.cat([(p.detach() - q).flatten() for p, q in zip(st.arch.parameters(), a0)]) \
        if a0 else torch.zeros(0)
    return dw, da


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_fp16_steps_do_not_depend_on_the_loss_scale(name, seed):
    # a power-of-two loss scale is exact in floating point: unscaled properly, the step is the
    # same at any scale; a gradient left scaled, or unscaled without having been scaled, moves
    # by the ratio of the scales (16 here); underflow at the smaller scale leaves a trace
    dw_a, da_a = _amp_run(name, seed, 2.0 ** 9)
    dw_b, da_b = _amp_run(name, seed, 2.0 ** 13)
    dw32, _ = _amp_run(name, seed, None)
    assert dw_a.norm() > 0
    assert (dw_a - dw_b).norm() <= 1e-2 * dw_a.norm(), name
    assert (da_a - da_b).norm() <= 1e-2 * max(float(da_a.norm()), 1e-12), name
    # and it is fp32's step up to fp16's rounding (a loose check: a few steps of a tiny net)
    assert torch.nn.functional.cosine_similarity(dw_a, dw32, dim=0) > 0.9, name


def test_the_step_context_takes_fp16_gradients_of_the_scaled_loss():
    import dataclasses
    sp, model, st, tb, vb = _setup("darts")
    ctx = _ctx(sp, model, st, vb, tb)
    w = torch.ones(3, requires_grad=True)

    def loss():  # d loss / d w = 1e-4 * 1e-4 = 1e-8: below fp16's smallest subnormal (6e-8)
        a = torch.tensor(1e-4, dtype=torch.float16)
        return ((w.half() * a) * a).float().sum()

    assert ctx.grad(loss(), [w])[0].abs().max() == 0  # unscaled: underflows to zero
    scaled = dataclasses.replace(ctx, scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    g = scaled.grad(loss(), [w])[0]
    assert torch.allclose(g, torch.full((3,), 1e-8), rtol=1e-2)
    # the first `scaled` inputs keep the scale (the weights': the scaler unscales them)
    v = torch.ones(3, requires_grad=True)
    gv, gw = scaled.grad(((v.half() * 1e-2).float() + (w.half() * 1e-2).float()).sum(), [v, w],
                         scaled=1)
    assert torch.allclose(gv, torch.full((3,), 1e-2 * 2.0 ** 12), rtol=1e-2)
    assert torch.allclose(gw, torch.full((3,), 1e-2), rtol=1e-2)
    # an overflow leaves zeros, not infinities (GradScaler skips the weights' step)
    big = torch.tensor(6e4, dtype=torch.float16)
    assert scaled.grad((w.half() * big).float().sum(), [w])[0].abs().max() == 0
