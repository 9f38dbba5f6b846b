"""The methods of issue 25 against exact computations of what their papers define: DrNAS's
pathwise Dirichlet gradient and KL term, β-DARTS's beta-decay gradient, FairDARTS's zero-one
loss, SDARTS's perturbations, DARTS-'s auxiliary skip, Λ-DARTS's correction and OLES's
stopping; several seeds, every kind of edge."""
import math

import pytest
import torch

from archgrad.core.addons import (
    AuxSkip,
    BetaDecay,
    LayerAlignment,
    OperationStopping,
    Perturbation,
    ZeroOne,
    alignment,
    alignment_direction,
    project_rows,
)
from archgrad.core.arch import ArchParams, Candidate, ChoiceGroup, Dirichlet, Mix, Sigmoid, Softmax
from archgrad.core.strategy import StepContext
from archgrad.methods import make_strategy
from archgrad.methods.drnas import DirichletSample
from archgrad.search import with_space_defaults
from archgrad.spaces import SPACES, get_space

SEEDS = [0, 1, 2]
GROUP = ChoiceGroup("g", tuple(Candidate(n, zero=(n == "none")) for n in
                               ("none", "skip", "conv", "pool", "conv5")),
                    ((0, 1), (0, 2), (1, 2)))


def _arch(par, seed, scale=1.0):
    a = ArchParams([GROUP], par, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a.theta["g"].copy_(scale * torch.randn(GROUP.shape,
                                               generator=torch.Generator().manual_seed(seed)))
    return a


def _ctx(epoch=0, epochs=10, seed=0, **kw):
    return StepContext(None, None, None, None, None, [], 0.0, epoch, epochs, 0, 1,
                       torch.Generator().manual_seed(seed), **kw)


# ---- DrNAS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_dirichlet_pathwise_gradient_matches_the_closed_form(seed):
    """E[c . w] = c . beta / sum(beta) for w ~ Dir(beta): the Monte-Carlo mean of the pathwise
    gradient over many draws equals the gradient of the closed form, beta = ELU(theta) + 1."""
    torch.manual_seed(seed)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    n = 40000
    conc = (torch.nn.functional.elu(theta) + 1).expand(n, 5)
    g = torch._standard_gamma(conc, generator=gen)
    w = g / g.sum(-1, keepdim=True)
    mc, = torch.autograd.grad((w @ c).mean(), theta)
    beta = torch.nn.functional.elu(theta) + 1
    exact, = torch.autograd.grad((beta / beta.sum()) @ c, theta)
    assert torch.allclose(mc, exact, atol=4e-3), (mc, exact)


@pytest.mark.parametrize("seed", SEEDS)
def test_dirichlet_estimator_samples_on_the_simplex_and_drops_dead_candidates(seed):
    a = _arch(Dirichlet(), seed)
    a.kill("g", torch.tensor([[False, True, False, False, False]] * 3))
    est = DirichletSample()
    w = est.sample(a, torch.Generator().manual_seed(seed))["g"]
    assert torch.allclose(w.sum(-1), torch.ones(3))
    assert (w[:, 1] == 0).all() and (w >= 0).all()
    # the same generator state draws the same weights (resume is exact)
    w2 = est.sample(a, torch.Generator().manual_seed(seed))["g"]
    assert torch.equal(w, w2)


@pytest.mark.parametrize("seed", SEEDS)
def test_drnas_kl_term_is_the_dirichlet_kl_to_the_uniform_prior(seed):
    a = _arch(Dirichlet(), seed)
    est = DirichletSample("kl", 1e-3)
    got = est.kl(a)
    beta = torch.nn.functional.elu(a.theta["g"].detach().double()) + 1
    K = beta.shape[1]
    a0 = beta.sum(-1)
    # KL(Dir(b) || Dir(1)) = lgamma(b0) - sum lgamma(b_i) - lgamma(K) + sum (b_i - 1)(psi(b_i)
    # - psi(b0))
    kl = (torch.lgamma(a0) - torch.lgamma(beta).sum(-1) - math.lgamma(K)
          + ((beta - 1) * (torch.digamma(beta) - torch.digamma(a0)[:, None])).sum(-1))
    assert float(got.detach()) == pytest.approx(float(kl.sum()), rel=1e-5)


# ---- β-DARTS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("epoch", [0, 7, 49])
def test_beta_decay_gradient_is_the_scaled_softmax(seed, epoch):
    a = _arch(Softmax(), seed)
    a.kill("g", torch.tensor([[False, False, True, False, False], [False] * 5, [False] * 5]))
    reg = BetaDecay(50.0, 100)
    grads = reg.arch_grads(_ctx(epoch, 50), a)
    lam = 50.0 * epoch / 100
    if lam == 0:
        assert grads == {}
        return
    theta = a.theta["g"].detach().masked_fill(~a.alive("g"), -math.inf)
    want = lam * torch.softmax(theta, -1) / GROUP.shape[0]
    assert torch.allclose(grads["g"], want, atol=1e-7)
    assert (grads["g"][0, 2] == 0)  # a removed candidate takes no gradient


def test_beta_decay_composes_with_gdas_and_refuses_the_simplex():
    st = make_strategy("gdas", beta_decay=50.0)
    assert [a.name for a in st.addons] == ["beta-decay"]
    from archgrad.errors import ArchgradError
    with pytest.raises(ArchgradError, match="logits"):
        make_strategy("gaea-darts", beta_decay=50.0)


# ---- FairDARTS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_zero_one_loss_gradient(seed):
    a = _arch(Sigmoid(), seed, scale=2.0)
    grads = ZeroOne(10.0).arch_grads(_ctx(), a)
    s = torch.sigmoid(a.theta["g"].detach())
    n = s.numel()
    want = -10.0 / n * 2 * (s - 0.5) * s * (1 - s)
    assert torch.allclose(grads["g"], want, atol=1e-7)
    # the loss pushes every sigmoid away from 0.5: a step against the gradient does
    moved = torch.sigmoid(a.theta["g"].detach() - 1.0 * grads["g"])
    assert ((moved - 0.5).abs() >= (s - 0.5).abs() - 1e-7).all()


def test_sigmoid_weights_are_independent():
    a = _arch(Sigmoid(), 0)
    p = a.probs()["g"].detach()
    assert torch.allclose(p, torch.sigmoid(a.theta["g"].detach()))


# ---- SDARTS ------------------------------------------------------------------------------
def _nb201_setup(name, seed=0, **opts):
    torch.manual_seed(seed)
    strat = make_strategy(name, **opts)
    sp = get_space("nb201", **with_space_defaults(SPACES.get("nb201"), {"C": 4, "N": 1}, strat))
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=seed)
    return strat, sp, model


@pytest.mark.parametrize("seed", SEEDS)
def test_random_smoothing_stays_in_the_ball_and_on_the_simplex(seed):
    strat, sp, model = _nb201_setup("sdarts-rs", seed)
    pert = strat.addons[0]
    g = torch.Generator().manual_seed(seed)
    batch = sp.example_batch(8, g)
    for epoch, eps in ((0, 0.03), (5, 0.03 + 0.27 * 0.5)):
        ctx = StepContext(model, strat.arch, sp.loss, batch, batch, strat.weight_params, 0.1,
                          epoch, 10, 0, 1, g)
        base = strat.estimator.weight_mix(ctx)
        m = pert.weight_mix(ctx, base)
        for k, w in m.weights.items():
            d = w - base.weights[k]
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[0]), atol=1e-6)
            assert (w >= 0).all() and (w <= 1).all()
            # projection of a point within eps of a simplex point: at most 2 eps away per entry
            assert d.abs().max() <= 2 * eps + 1e-6
            assert d.abs().max() > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_pgd_perturbation_raises_the_training_loss(seed):
    """SDARTS-ADV's PGD finds a perturbation that raises the training loss more than the
    random one of the same radius, within the L-inf ball (eval mode, as the release)."""
    strat, sp, model = _nb201_setup("sdarts-adv", seed, perturb_steps=7)
    g = torch.Generator().manual_seed(seed)
    batch = sp.example_batch(16, g)
    ctx = StepContext(model, strat.arch, sp.loss, batch, batch, strat.weight_params, 0.1,
                      9, 10, 0, 1, g)
    base = strat.estimator.weight_mix(ctx)
    model.eval()
    with torch.no_grad():
        l0 = float(ctx.forward(base)[1])
        adv = strat.addons[0].weight_mix(ctx, base)
        l_adv = float(ctx.forward(adv)[1])
        rnd = Perturbation("random").weight_mix(ctx, base)
        l_rnd = float(ctx.forward(rnd)[1])
    model.train()
    eps = strat.addons[0].eps_at(9, 10)
    for k, w in adv.weights.items():
        assert torch.allclose(w.sum(-1), torch.ones(w.shape[0]), atol=1e-6)
        assert (w - base.weights[k]).abs().max() <= 2 * eps + 1e-6
    assert l_adv > l0 and l_adv > l_rnd, (l0, l_rnd, l_adv)


def test_project_rows_is_sdarts_clip():
    w = torch.tensor([[0.5, -0.2, 0.9], [-1.0, -0.5, -0.1]])
    p = project_rows(w)
    assert torch.allclose(p[0], torch.tensor([0.5, 0.0, 0.9]) / 1.4)
    assert torch.equal(p[1], torch.tensor([0.0, 0.0, 1.0]))


def test_perturbation_refuses_a_sampling_strategy():
    from archgrad.errors import ArchgradError
    with pytest.raises(ArchgradError, match="relaxed"):
        make_strategy("gdas", perturb="random")


# ---- DARTS- ---------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["nb201", "darts"])
@pytest.mark.parametrize("seed", [0, 1])
def test_auxiliary_skip_adds_its_decaying_coefficient_times_the_skip(space, seed):
    torch.manual_seed(seed)
    strat = make_strategy("darts-minus")
    tiny = dict(SPACES.get(space).tiny)
    sp = get_space(space, **with_space_defaults(SPACES.get(space), tiny, strat))
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=seed)
    cells = [m for m in model.modules() if hasattr(m, "aux_coef")]
    assert cells
    for epoch in (0, 3, 9):
        strat.addons[0].begin_step(strat, epoch, 10)
        assert all(m.aux_coef == pytest.approx(1 - epoch / 10) for m in cells)
    assert AuxSkip().coef(10, 10) == 0.0
    # nothing mixed (every weight 0): a node holds only the auxiliary skips of its inputs, so
    # the output is linear in the coefficient's effect; coefficient 0 is the plain supernet
    x, _ = sp.example_batch(2, torch.Generator().manual_seed(seed))
    mix = Mix({k: torch.zeros(g.shape) for k, g in sp.groups().items()})
    model.eval()
    outs = []
    for c in (0.0, 0.5):
        for m in cells:
            m.aux_coef = c
        with torch.no_grad():
            outs.append(model(x, mix))
    assert not torch.allclose(outs[0], outs[1])


# ---- Λ-DARTS -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_alignment_direction_is_the_gradient_of_the_alignment(seed):
    torch.manual_seed(seed)
    gs = [torch.randn(6, 5, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    want = torch.autograd.grad(alignment(gs), gs)
    got = alignment_direction([g.detach() for g in gs])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_lambda_correction_is_minus_the_weights_gradient_of_the_alignment(seed):
    """The correction added to the weights' gradient equals -lambda_t grad_w A(w), A the mean
    pairwise cosine of the cells' architecture gradients, computed exactly by double backward
    (float64, the cells of the fused NAS-Bench-201 supernet, BN in train mode)."""
    torch.set_default_dtype(torch.float64)
    try:
        strat, sp, model = _nb201_setup("lambda-darts", seed, lambda_eps=1e-6)
        assert any(type(m).__name__ == "FusedSearchCell" for m in model.modules())
        model.double()
        g = torch.Generator().manual_seed(seed)
        x, y = sp.example_batch(8, g)
        batch = (x.double(), y)
        W = strat.weight_params
        ctx = StepContext(model, strat.arch, sp.loss, batch, batch, W, 0.1, 5, 11, 0, 1, g)
        add = strat.addons[0]
        buffers = {k: b.clone() for k, b in model.named_buffers()}
        # train mode, as the search: BN on each batch's statistics (in eval mode with the
        # initial running statistics a ReLU can sit exactly on its kink, where the finite
        # difference of the gradient is undefined)
        # exact: A(w) from per-cell copies, its gradient in w by double backward
        mix = add.weight_mix(ctx, strat.estimator.weight_mix(ctx))
        _, loss = ctx.forward(mix, batch)
        layers = sorted(mix.layers)
        ws = [mix.layers[i]["cell"] for i in layers]
        gl = torch.autograd.grad(loss, ws, create_graph=True)
        A = alignment(list(gl))
        exact = torch.autograd.grad(A, W, allow_unused=True)
        # the addon's correction after a plain backward
        for k, b in model.named_buffers():
            b.copy_(buffers[k])
        mix = add.weight_mix(ctx, strat.estimator.weight_mix(ctx))
        _, loss = ctx.forward(mix, batch)
        for p in W:
            p.grad = None
        loss.backward()
        base = [p.grad.clone() for p in W]
        add.after_backward(ctx, strat, mix)
        lam = add.coef(5, 11)
        got = torch.cat([(p.grad - b).flatten() for p, b in zip(W, base)])
        want = torch.cat([(-lam * e).flatten() if e is not None else torch.zeros(p.numel())
                          for p, e in zip(W, exact)])
        cos = float(got @ want / (got.norm() * want.norm()))
        assert cos > 0.999, cos
        assert float(got.norm() / want.norm()) == pytest.approx(1.0, rel=1e-3)
        for k, b in model.named_buffers():
            b.copy_(buffers[k])
    finally:
        torch.set_default_dtype(torch.float32)


def test_layered_mix_gives_each_cell_its_own_weights():
    strat, sp, model = _nb201_setup("darts", 0)
    g = torch.Generator().manual_seed(0)
    x, y = sp.example_batch(4, g)
    probs = strat.arch.probs_detached()["cell"].clone().requires_grad_(True)
    loss = sp.loss(model(x, Mix({"cell": probs})), y)
    shared, = torch.autograd.grad(loss, probs)
    mix = Mix({"cell": probs.detach()}, layered=True)
    sp.loss(model(x, mix), y).backward()
    per_cell = [ws["cell"].grad for _, ws in sorted(mix.layers.items())]
    assert len(per_cell) == 3  # N=1: one search cell per stage
    assert torch.allclose(sum(per_cell), shared, atol=1e-6)


# ---- OLES ---------------------------------------------------------------------------------
def _run_steps(strat, sp, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for step in range(n):
        strat.step(sp.example_batch(8, g), sp.example_batch(8, g), loss_fn=sp.loss, epoch=0,
                   epochs=10, step=step, steps_per_epoch=n)


@pytest.mark.parametrize("threshold,frozen", [(1.0, True), (-1.0, False)])
def test_oles_freezes_ops_whose_matching_stays_below_the_threshold(threshold, frozen):
    strat, sp, model = _nb201_setup("oles", 0, oles=threshold, oles_window=3)
    add = strat.addons[0]
    _run_steps(strat, sp, 4)  # the first step has no previous gradient: 3 scores by step 4
    assert add.frozen and all(f == frozen for f in add.frozen)
    groups = add.groups(strat)
    before = [[p.detach().clone() for p in ps] for ps in groups]
    _run_steps(strat, sp, 2, seed=1)
    for ps, b in zip(groups, before):
        same = all(torch.equal(p, q) for p, q in zip(ps, b))
        assert same == frozen
    # its state survives a checkpoint
    state = strat.get_extra_state()
    other, _, _ = _nb201_setup("oles", 0, oles=threshold, oles_window=3)
    other.set_extra_state(state)
    assert other.addons[0].frozen == add.frozen


def test_oles_score_is_the_releases_cosine():
    from archgrad.core.addons import _matching
    a, b = torch.randn(4, 3, 3, 3), torch.randn(4, 3, 3, 3)
    assert float(_matching(a, b)) == pytest.approx(
        float(torch.cosine_similarity(a, b, dim=0).mean()))
    assert OperationStopping(match="paper").match == "paper"


def test_lambda_alignment_needs_a_relaxed_strategy():
    from archgrad.errors import ArchgradError
    with pytest.raises(ArchgradError, match="relaxed"):
        make_strategy("gdas", lambda_reg=0.1)
    assert LayerAlignment().coef(0, 10) == 0.0


# ---- DrNAS, progressive ---------------------------------------------------------------------
def test_drnas_progressive_prunes_widens_and_carries_the_weights():
    from archgrad.core.ops import PartialMixedOp
    from archgrad.methods.drnas import _widen
    strat = make_strategy("drnas-progressive")
    cls = SPACES.get("nb201")
    strat.bind_space(cls, {"C": 8, "N": 1})
    stages = strat.stages_for(20)
    assert [(s.start, s.end, s.space, s.warmup) for s in stages] == [
        (0, 10, {"partial_channels": 4}, 2), (10, 20, {"partial_channels": 2}, 2)]
    sp0 = get_space("nb201", C=8, N=1, partial_channels=4)
    m0 = sp0.supernet()
    strat.setup(sp0.choices(), m0, seed=0)
    g = torch.Generator().manual_seed(0)
    for step in range(3):  # momentum buffers to carry over
        strat.step(sp0.example_batch(8, g), sp0.example_batch(8, g), loss_fn=sp0.loss, epoch=2,
                   epochs=20, step=step, steps_per_epoch=3)
    theta = strat.arch.theta["cell"].detach().clone()
    old = {n: p.detach().clone() for n, p in m0.named_parameters()}
    m1 = get_space("nb201", C=8, N=1, partial_channels=2).supernet()
    info = strat.begin_stage(1, stages[1], m1)
    alive = strat.arch.alive("cell")
    assert info["n_pruned"] == 6 * 2 and (alive.sum(-1) == 3).all()
    # the 3 largest concentrations of every edge survive, with their values
    want = torch.zeros_like(alive).scatter_(1, theta.argsort(-1, descending=True)[:, :3], True)
    assert torch.equal(alive, want) and torch.equal(strat.arch.theta["cell"].detach(), theta)
    widened = 0
    for n, p in m1.named_parameters():
        q = old[n]
        lead = p[tuple(slice(0, s) for s in q.shape)]
        assert torch.equal(lead, q), n  # the old weights in the leading slices
        widened += p.shape != q.shape
        if p.shape != q.shape:
            assert strat.weight_opt.state[p]["momentum_buffer"].shape == p.shape
    assert widened > 0 and any(isinstance(m, PartialMixedOp) and m.K == 2 for m in m1.modules())
    # net2wider's new channels are copies of old ones
    t = torch.arange(6.0).view(2, 3)
    w = _widen(t, torch.Size([4, 3]), torch.Generator().manual_seed(0))
    assert all(any(torch.equal(r, o) for o in t) for r in w[2:])
