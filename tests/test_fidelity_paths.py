"""Fidelity, third pass: the paths that differed from the official code, each held against the
official formula computed exactly here (several seeds; both regimes where one applies)."""
import pytest
import torch
from torch.func import functional_call

from archgrad.core.arch import Mix
from archgrad.core.strategy import StepContext
from archgrad.data.text import StateBox, Window
from archgrad.methods import make_strategy
from archgrad.spaces import get_space

SEEDS = [0, 1, 2]


# ---- darts-2nd on the recurrent cell: rnn/architect.py's clipping ------------------------------
def _rnn_setup(seed, clip, dtype=torch.float64, **strat_opts):
    torch.manual_seed(seed)
    sp = get_space("darts-rnn", ninp=6, nhid=6, vocab_size=15, steps=3, dropout=0.0,
                   dropouth=0.0, dropoutx=0.0, dropouti=0.0, dropoute=0.0)
    model = sp.supernet().to(dtype)
    strat = make_strategy("darts-2nd", xi=0.5, lr=20.0, momentum=0.0, weight_decay=5e-7,
                          grad_clip=clip, **strat_opts)
    strat.setup(sp.choices(), model, seed=seed)
    strat.arch.to(dtype)
    with torch.no_grad():
        for t in strat.arch.theta.values():
            t.copy_(torch.randn(t.shape, dtype=dtype))
    g = torch.Generator().manual_seed(100 + seed)

    def batch():
        toks = torch.randint(0, 15, (6, 3), generator=g)
        return Window(toks[:-1], None, StateBox()), toks[1:].reshape(-1)

    return sp, model, strat, batch(), batch()


def _clip(gs, c):
    norm = torch.sqrt(sum((x ** 2).sum() for x in gs))
    coef = c / (norm + 1e-6)
    return [x * min(float(coef), 1.0) for x in gs], float(coef)


def _official_rnn_gradient(sp, model, strat, tb, vb, xi, clip, wd):
    """rnn/architect.py, computed exactly: g clipped (coefficient c1), w' = w - xi (g + wd w),
    v = grad_w' L_val(w') clipped, grad = grad_a L_val(w') - xi c1 H v, H v by double backward."""
    names = [n for n, _ in model.named_parameters()]
    w0 = [p.detach().clone() for p in model.parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    keys = strat.arch.param_keys()
    thetas = [strat.arch.param(k) for k in keys]

    def loss(ws, batch):
        mix = Mix(strat.arch.probs(), strat.arch.dense_active())
        out = functional_call(model, {**dict(zip(names, ws)), **buffers}, (batch[0], mix))
        return sp.loss(out, batch[1])

    w = [x.clone().requires_grad_(True) for x in w0]
    g = torch.autograd.grad(loss(w, tb), w)
    gc, c1 = _clip(list(g), clip)
    wu = [(x - xi * (gi + wd * x)).detach().requires_grad_(True) for x, gi in zip(w0, gc)]
    gs = torch.autograd.grad(loss(wu, vb), thetas + wu)
    d_alpha, v = gs[:len(thetas)], list(gs[len(thetas):])
    vc, _ = _clip(v, clip)
    w = [x.clone().requires_grad_(True) for x in w0]
    gw = torch.autograd.grad(loss(w, tb), w, create_graph=True)
    hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(gw, vc)), thetas)
    return {k: da - xi * c1 * h for k, da, h in zip(keys, d_alpha, hv)}, c1


def _ours(sp, model, strat, tb, vb):
    ctx = StepContext(model, strat.arch, sp.loss, vb, tb, strat.weight_params, 20.0, 0, 1, 0, 1,
                      strat.generator, weight_opt=strat.weight_opt,
                      weights_cfg=strat.weights_cfg)
    return strat.estimator.arch_step(ctx).grads


def _rel(a, b):
    num = sum(float((a[k] - b[k]).norm() ** 2) for k in a) ** 0.5
    return num / sum(float(b[k].norm() ** 2) for k in b) ** 0.5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip", [1e-3, 0.25, 50.0])
def test_rnn_second_order_follows_the_official_clipping(seed, clip):
    """Clip active (1e-3, 0.25 on this cell) and inactive (50: the coefficient exceeds 1 and the
    official code still scales the implicit term by it)."""
    sp, model, strat, tb, vb = _rnn_setup(seed, clip, unroll_clip=True, hvp="exact")
    ref, c1 = _official_rnn_gradient(sp, model, strat, tb, vb, 0.5, clip, 5e-7)
    assert _rel(_ours(sp, model, strat, tb, vb), ref) < 1e-9
    # the paper's finite difference at a small step agrees with it too
    strat.estimator.hvp, strat.estimator.eps_scale = "finite-difference", 1e-6
    assert _rel(_ours(sp, model, strat, tb, vb), ref) < 1e-5
    # without the clipping (the CNN code's path) the gradient is another one
    strat.estimator.unroll_clip = False
    assert _rel(_ours(sp, model, strat, tb, vb), ref) > 1e-3
    assert (c1 < 1) == (clip < 1)


def test_the_recurrent_space_turns_the_clipping_on_and_the_image_spaces_do_not():
    from archgrad.search import check_search_kwargs
    rnn = check_search_kwargs("darts-rnn", "darts-2nd", "synthetic-text", device="cpu")
    cnn = check_search_kwargs("darts", "darts-2nd", "digits", device="cpu")
    nb = check_search_kwargs("nb201", "darts-2nd", "digits", device="cpu")
    assert make_strategy("darts-2nd", **rnn.strategy_options).estimator.unroll_clip
    assert not make_strategy("darts-2nd", **cnn.strategy_options).estimator.unroll_clip
    assert not make_strategy("darts-2nd", **nb.strategy_options).estimator.unroll_clip
    # the user's setting wins
    off = check_search_kwargs("darts-rnn", "darts-2nd", "synthetic-text", device="cpu",
                              unroll_clip=False)
    assert not make_strategy("darts-2nd", **off.strategy_options).estimator.unroll_clip


# ---- the exact Hessian-vector product --------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_exact_hvp_equals_the_exact_unrolled_gradient(seed):
    """hvp=exact gives grad_a L_val(w') - xi H v with H v by double backward: the exact gradient
    through the unrolled step (momentum and weight decay included), on every edge kind of the
    NB201 cell; it leaves weights and batch-norm statistics as they were."""
    torch.manual_seed(seed)
    dtype = torch.float64
    sp = get_space("nb201", C=3, N=1, num_classes=4, in_channels=2)
    model = sp.supernet().to(dtype)
    strat = make_strategy("darts-2nd", xi=0.1, hvp="exact")
    strat.setup(sp.choices(), model, seed=seed)
    strat.arch.to(dtype)
    with torch.no_grad():
        strat.arch.theta["cell"].copy_(torch.randn(6, 5, dtype=dtype))
    g = torch.Generator().manual_seed(seed)
    batch = lambda: (torch.randn(8, 2, 6, 6, generator=g, dtype=dtype),  # noqa: E731
                     torch.randint(0, 4, (8,), generator=g))
    tb, vb = batch(), batch()
    opt = strat.weight_opt
    for _ in range(2):  # a momentum buffer
        opt.zero_grad()
        sp.loss(model(tb[0], Mix(strat.arch.probs_detached(), strat.arch.dense_active())),
                tb[1]).backward()
        opt.step()
    names = [n for n, _ in model.named_parameters()]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    w = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    cfg = strat.weights_cfg

    def loss(ws, b):
        out = functional_call(model, {**dict(zip(names, ws)), **buffers},
                              (b[0], Mix(strat.arch.probs(), strat.arch.dense_active())))
        return sp.loss(out, b[1])

    gt = torch.autograd.grad(loss(w, tb), w, create_graph=True)
    bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    wu = [wi - 0.1 * (cfg.momentum * m + gi + cfg.weight_decay * wi)
          for wi, gi, m in zip(w, gt, bufs)]
    exact = torch.autograd.grad(loss(wu, vb), strat.arch.theta["cell"])[0]
    before = [p.detach().clone() for p in model.parameters()] + \
        [b.clone() for b in model.buffers()]
    ctx = StepContext(model, strat.arch, sp.loss, vb, tb, strat.weight_params, 0.5, 0, 1, 0, 1,
                      strat.generator, weight_opt=opt, weights_cfg=cfg)
    ours = strat.estimator.arch_step(ctx).grads["cell"]
    after = [p.detach() for p in model.parameters()] + list(model.buffers())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert float((ours - exact).norm() / exact.norm()) < 1e-10


# ---- AdvantageNAS's zero-op rule on its recurrent cell ----------------------------------------
def test_candidate_roles_are_separate_output_zero_and_skipped():
    groups = {name: get_space(name, **kw).choices()[0] for name, kw in (
        ("advantagenas-rnn", {}), ("nb201", {}), ("darts-rnn", {"include_none": True}))}
    adv = groups["advantagenas-rnn"]
    z = adv.index("zero")
    assert adv.zero_mask[z] and not adv.skip_mask[z]  # outputs zero, computed (highway)
    assert sum(adv.zero_mask) == 1 and not any(adv.skip_mask)
    for g in (groups["nb201"], groups["darts-rnn"]):  # 'none': zero and never computed
        assert g.zero_mask == g.skip_mask and g.zero_mask[g.index("none")]


@pytest.mark.parametrize("seed", SEEDS)
def test_advantage_gives_a_sampled_ptb_zero_the_worst_moving_average(seed):
    """AdvantageNAS footnote 4 / util.adv_grad(zero_pos=4): a sampled 'zero' takes the worst
    moving-average advantage of the other ops on its edge (it read exactly 0, a zero-valued
    op's gradient, on every sample before). The moving averages are kept here independently."""
    torch.manual_seed(seed)
    sp = get_space("advantagenas-rnn", nhid=6, vocab_size=15, nodes=2, dropout=0.0)
    model = sp.supernet()
    strat = make_strategy("advantage")
    strat.setup(sp.choices(), model, seed=seed)
    est, group = strat.estimator, sp.choices()[0]
    z = group.index("zero")
    g = torch.Generator().manual_seed(seed)
    table = torch.zeros(group.shape, dtype=torch.float64)
    seen_zero = worst_nonzero = 0
    real = est.advantages
    for step in range(40):
        toks = torch.randint(0, 15, (6, 3), generator=g)
        b = (Window(toks[:-1], None, StateBox()), toks[1:].reshape(-1))
        ctx = StepContext(model, strat.arch, sp.loss, b, b, strat.weight_params, 1.0, 0, 1,
                          step, 40, strat.generator)
        mix, idx = est.arch_mix(ctx)
        _, loss = ctx.forward(mix)
        grads = torch.autograd.grad(loss, [mix.weights[group.label]])
        adv = real(strat.arch, idx, grads)[group.label]
        raw = -grads[0].double()
        for e, j in enumerate(idx[group.label]):
            if j == z:
                others = table[e].clone()
                others[z] = float("inf")
                worst = float(others.min())
                assert float(adv[e]) == pytest.approx(worst, abs=1e-12)
                seen_zero += 1
                worst_nonzero += worst != 0.0
            else:
                assert float(adv[e]) == pytest.approx(float(raw[e, j]), rel=1e-5, abs=1e-9)
                table[e, j] = 0.95 * table[e, j] + 0.05 * raw[e, j]
    assert seen_zero > 3 and worst_nonzero > 0


# ---- GDAS on the DARTS cell: no constant terms (NASNetSearchCell.forward_gdas) ----------------
def _gdas_on(space_name, seed, **space_kw):
    from archgrad.core.sampling import gumbel
    from archgrad.search import check_search_kwargs
    cfg = check_search_kwargs(space_name, "gdas", "digits", device="cpu")
    torch.manual_seed(seed)
    sp = get_space(space_name, **space_kw)
    model = sp.supernet().double()
    strat = make_strategy("gdas", **cfg.strategy_options)
    strat.setup(sp.choices(), model, seed=seed)
    strat.arch.double()
    with torch.no_grad():
        for t in strat.arch.theta.values():
            t.copy_(torch.randn(t.shape, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    b = (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64),
         torch.randint(0, 10, (4,), generator=g))
    ctx = StepContext(model, strat.arch, sp.loss, b, b, strat.weight_params, 0.1, 3, 10, 0, 5,
                      strat.generator, total_arch_steps=50, arch_step_index=15)
    state = strat.generator.get_state()
    ours = strat.estimator.arch_step(ctx).grads
    # the official estimator: per edge the sampled op j times its hard weight h_j, where
    # h = onehot - s.detach() + s, s = softmax((log p + G) / tau); nothing for the others
    gen = torch.Generator()
    gen.set_state(state)
    tau = 10.0 - (10.0 - 0.1) * 3 / 9
    lps = strat.arch.log_probs()
    soft, idx = {}, {}
    for k, lp in lps.items():
        s = torch.softmax((lp + gumbel(lp.shape, gen).to(lp.dtype)) / tau, -1)
        soft[k], idx[k] = s, s.argmax(-1).tolist()
    mix = Mix.onehot(idx, strat.arch.groups, dtype=torch.float64)
    mix.active = {k: [(j,) for j in v] for k, v in idx.items()}
    for w in mix.weights.values():
        w.requires_grad_(True)
    loss = sp.loss(model(b[0], mix), b[1])
    gw = torch.autograd.grad(loss, list(mix.weights.values()))
    keys = list(soft)
    ref = torch.autograd.grad([soft[k] for k in keys], [strat.arch.theta[k] for k in keys],
                              grad_outputs=[gw[list(mix.weights).index(k)] * mix.weights[k]
                                            .detach() for k in keys])
    return strat, ours, dict(zip(keys, ref))


@pytest.mark.parametrize("seed", SEEDS)
def test_gdas_on_the_darts_cell_is_the_official_nasnet_estimator(seed):
    """Normal and reduction cells (both edge kinds): the theta-gradient equals the official
    NASNet cell's; the NB201 cell keeps its constant terms."""
    strat, ours, ref = _gdas_on("darts", seed, C=4, layers=3, num_classes=10)
    assert not strat.estimator.inactive_gradient
    assert set(ours) == {"normal", "reduce"}
    assert _rel(ours, ref) < 1e-10
    strat, _, _ = _gdas_on("nb201", seed, C=4, N=1, num_classes=10)
    assert strat.estimator.inactive_gradient


def test_gdas_temperature_anneals_over_the_architecture_epochs():
    """With a warm-up, tau is tau_max at the first architecture epoch and tau_min at the last;
    without one, exps/algos/GDAS.py's tau_max - (tau_max - tau_min) epoch / (epochs - 1)."""
    est = make_strategy("gdas").estimator
    spe, epochs = 4, 10

    def tau(epoch, warmup):
        arch_epochs = epochs - warmup
        index = max(epoch - warmup, 0) * spe
        ctx = StepContext(None, None, None, None, None, [], 0.1, epoch, epochs, 0, spe, None,
                          total_arch_steps=arch_epochs * spe, arch_step_index=index)
        return est.tau(ctx)

    assert [tau(e, 0) for e in range(10)] == pytest.approx(
        [10.0 - 9.9 * e / 9 for e in range(10)])
    assert tau(4, 4) == pytest.approx(10.0) and tau(9, 4) == pytest.approx(0.1)
    assert tau(6, 4) == pytest.approx(10.0 - 9.9 * 2 / 5)


# ---- PARSEC as AdvantageNAS compared against it (util.py mode "PA") ---------------------------
def _parsec_setup(seed, **opts):
    torch.manual_seed(seed)
    sp = get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet()
    st = make_strategy("parsec", form="advantagenas", arch_weight_decay=0.0, **opts)
    st.setup(sp.choices(), model, seed=seed)
    st.set_lr(0, 10)
    with torch.no_grad():
        for t in st.arch.theta.values():
            t.copy_(torch.randn(t.shape) * 0.5)
    g = torch.Generator().manual_seed(50 + seed)
    batches = [sp.example_batch(6, g) for _ in range(16)]
    return sp, model, st, batches


def _parsec_ctx(sp, model, st, batch, step):
    return StepContext(model, st.arch, sp.loss, batch, batch, st.weight_params, st.lr, 0, 10,
                       step, 20, st.generator, total_arch_steps=200, arch_step_index=step)


@pytest.mark.parametrize("seed", SEEDS)
def test_parsec_comparison_form_updates_once_per_eight_draws_with_softmax_of_the_losses(seed):
    sp, model, st, batches = _parsec_setup(seed)
    model.eval()
    draws = []
    theta0 = st.arch.theta["cell"].detach().clone()
    for i in range(7):
        res = st.estimator.arch_step(_parsec_ctx(sp, model, st, batches[i], i))
        assert res.grads == {}
        draws.append(res.samples[0][0])
    assert torch.equal(st.arch.theta["cell"], theta0)
    res = st.estimator.arch_step(_parsec_ctx(sp, model, st, batches[7], 7))
    draws.append(res.samples[0][0])
    # the official computation: each draw's mean loss on its own batch, w = softmax(+losses),
    # grad = sum_i w_i (onehot(a_i) - p)
    with torch.no_grad():
        losses = torch.tensor([float(sp.loss(model(batches[i][0], sp.discrete_mix(
            sp.genotype_from_indices(d))), batches[i][1])) for i, d in enumerate(draws)],
            dtype=torch.float64)
    w = torch.softmax(losses, 0)
    p = torch.softmax(theta0, -1).double()
    expected = sum(wi * (torch.nn.functional.one_hot(torch.tensor(d["cell"]), 5).double() - p)
                   for wi, d in zip(w, draws))
    assert torch.allclose(res.grads["cell"].double(), expected, atol=1e-6)
    assert st.estimator.pending == []


def test_parsec_comparison_form_steps_theta_every_eighth_iteration_and_resumes_its_draws():
    sp, model, st, batches = _parsec_setup(0)
    changes = []
    for i in range(12):
        before = st.arch.theta["cell"].detach().clone()
        st.arch_step(_parsec_ctx(sp, model, st, batches[i], i))
        changes.append(not torch.equal(before, st.arch.theta["cell"]))
        if i == 9:
            state = {k: v for k, v in st.state_dict().items()}
    assert changes == [i == 7 for i in range(12)]
    sp2, model2, st2, _ = _parsec_setup(0)
    st2.load_state_dict(state)
    assert st2.estimator.pending == st.estimator.pending[:2]
    with pytest.raises(Exception, match="form"):
        make_strategy("parsec", form="official")


def test_the_advantagenas_protocols_run_parsec_as_its_comparison_code():
    from archgrad import protocols
    for name in ("advantagenas-toy", "advantagenas-nb201", "advantagenas-ptb"):
        proto = protocols.load(name)
        for scale in ("full", "proxy", "tiny"):
            opts = proto.at_scale(scale).search_kwargs("parsec")["strategy_options"]
            assert opts.get("form") == "advantagenas", (name, scale)


# ---- SNAS's temperature in AdvantageNAS's toy comparison -------------------------------------
def test_snas_cosine_temperature_is_the_comparison_codes_over_iterations():
    st = make_strategy("snas", temp_schedule="cosine", temp_init=1.0, temp_min=0.0)
    est = st.estimator
    T = 2000
    for t in (0, 1, 500, 1000, 1999):
        ctx = StepContext(None, None, None, None, None, [], 0.1, t // 10, 200, t % 10, 10, None,
                          total_arch_steps=T, arch_step_index=t)
        assert est.temperature(ctx) == pytest.approx((torch.cos(torch.tensor(
            t * torch.pi / T, dtype=torch.float64)).item() + 1) / 2, abs=1e-12)
    # the default stays SNAS's own: linear per epoch
    lin = make_strategy("snas").estimator
    ctx = StepContext(None, None, None, None, None, [], 0.1, 4, 10, 3, 10, None,
                      total_arch_steps=100, arch_step_index=43)
    assert lin.temperature(ctx) == pytest.approx(0.03 + 0.97 * (1 - 5 / 10))
    with pytest.raises(Exception, match="temp_min"):
        make_strategy("snas", temp_min=0.0)
    from archgrad import protocols
    opts = protocols.load("advantagenas-toy").search_kwargs("snas")["strategy_options"]
    assert opts["temp_schedule"] == "cosine" and opts["temp_min"] == 0.0


# ---- RSPS as NAS-Bench-201 selects: one validation batch per random cell ----------------------
class _Loader:
    def __init__(self, batches):
        self.batches = batches

    def epoch(self, epoch=0):
        return iter(self.batches)


class _OneBatchTask:
    def __init__(self, batches):
        self.loader = _Loader(batches)

    def validation_batches(self, seed):
        return self.loader


@pytest.mark.parametrize("seed", SEEDS)
def test_random_ws_one_batch_selection_scores_each_cell_on_its_own_batch(seed):
    from archgrad.search import _rank_random
    torch.manual_seed(seed)
    sp = get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet()
    st = make_strategy("random-ws", candidates=12, selection="one-batch")
    st.setup(sp.choices(), model, seed=seed)
    g = torch.Generator().manual_seed(seed)
    batches = [sp.example_batch(5, g) for _ in range(5)]  # fewer batches than cells: cycles
    calls = []
    h = model.register_forward_pre_hook(lambda m, a: calls.append((a[0], a[1], m.training)))
    model.train()
    best, info = _rank_random(sp, model, st, _OneBatchTask(batches), torch.device("cpu"),
                              top=12)
    h.remove()
    assert len(calls) == 12 and not any(tr for _, _, tr in calls) and model.training
    assert all(torch.equal(x, batches[i % 5][0]) for i, (x, _, _) in enumerate(calls))
    model.eval()
    with torch.no_grad():
        accs = [float((model(x, mix).argmax(-1) == batches[i % 5][1]).float().mean()) * 100
                for i, (x, mix, _) in enumerate(calls)]
    assert sorted((round(a, 6) for _, a in info["top"]), reverse=True) == \
        sorted((round(a, 6) for a in accs), reverse=True)
    assert info["top"][0][1] == pytest.approx(max(accs)) and str(best) == info["top"][0][0]
    assert st.final_derive == "rank-random (one-batch)"


# ---- protocol and default settings read from the official configurations ---------------------
def test_settings_follow_the_official_configurations():
    from archgrad import protocols
    from archgrad.methods import STRATEGIES
    gp = make_strategy("gaea-pcdarts").settings()
    assert gp["lr_min"] == 0.0 and gp["warmup_epochs"] == 0 and gp["batch_size"] == 256
    pc = make_strategy("pcdarts").settings()
    assert pc["lr_min"] == 1e-3 and pc["warmup_epochs"] == 0.3  # the stored train_search.py
    assert "search_pcdarts.yaml" in STRATEGIES.get("gaea-pcdarts").sources["weights"]
    assert protocols.load("gaea-nb201").search_kwargs("gaea-darts")["space_options"]["C"] == 24
    rs = protocols.load("nb201-darts-family").search_kwargs("random-ws")["strategy_options"]
    assert rs["selection"] == "one-batch" and rs["candidates"] == 100


# ---- GAEA's bi-level search keeps its best-validation epoch ----------------------------------
def test_best_valid_derivation_keeps_the_first_best_validation_epoch():
    from archgrad.search import best_valid_record
    h = [{"epoch": 1, "valid_acc": 50.0, "genotype": "a"}, {"epoch": 2, "genotype": "b"},
         {"epoch": 3, "valid_acc": 61.0, "genotype": "c"},
         {"epoch": 4, "valid_acc": 61.0, "genotype": "d"},
         {"epoch": 5, "valid_acc": 40.0, "genotype": "e"}]
    assert best_valid_record(h)["genotype"] == "c"
    lm = [{"epoch": 1, "valid_ppl": 300.0, "genotype": "a"},
          {"epoch": 2, "valid_ppl": 250.0, "genotype": "b"},
          {"epoch": 3, "valid_ppl": 280.0, "genotype": "c"}]
    assert best_valid_record(lm)["genotype"] == "b"
    assert best_valid_record([{"epoch": 1, "genotype": "a"}]) is None


def test_a_best_valid_search_returns_the_genotype_of_its_best_epoch():
    import archgrad
    from archgrad.errors import ArchgradError
    res = archgrad.search("nb201", "gaea-darts", "synthetic", epochs=4, seed=1,
                          space_options={"C": 4, "N": 1},
                          strategy_options={"derive": "best-valid"})
    accs = [r["valid_acc"] for r in res.history]
    best = accs.index(max(accs))
    assert str(res.genotype) == res.history[best]["genotype"]
    assert res.final["best_valid_epoch"] == best + 1 and res.final["derive"] == "best-valid"
    with pytest.raises(ArchgradError, match="best-valid"):
        archgrad.search("nb201", "gaea-darts", "synthetic", epochs=2, eval_every=0,
                        space_options={"C": 4, "N": 1},
                        strategy_options={"derive": "best-valid"})
    from archgrad import protocols
    opts = protocols.load("gaea-nb201").search_kwargs("gaea-darts")["strategy_options"]
    assert opts["derive"] == "best-valid"


# ---- GAEA's ERM: the architecture's own batch from a second pass over the same data ----------
def test_all_resampled_steps_the_architecture_on_its_own_pass_over_the_training_data():
    from archgrad.data import load_dataset
    from archgrad.engine.task import ImageTask
    data = load_dataset("synthetic")
    task = ImageTask(data, 16, 0, "cpu", torch.nn.functional.cross_entropy, "all-resampled")
    pairs = list(task.batches(0))
    assert len(pairs) == task.steps_per_epoch == len(data.y_train) // 16
    ys_w = torch.cat([w[1] for w, _ in pairs])
    ys_a = torch.cat([a[1] for _, a in pairs])
    # the same examples (label multiset), in another order
    assert torch.equal(torch.sort(ys_w).values, torch.sort(ys_a).values)
    assert not all(torch.equal(w[0], a[0]) for w, a in pairs)
    assert task.eval_split == "test" or "no test split" in task.eval_split
    # the strategy: arch step on that batch (first, as the release), then the weights' step
    sp = get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet()
    st = make_strategy("gaea-darts-single")
    assert st.data_split == "all-resampled" and not st.bilevel
    st.setup(sp.choices(), model, seed=0)
    seen = []
    h = model.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    (tb, vb) = pairs[0]
    st.step(tb, vb, loss_fn=sp.loss, epoch=0, epochs=2, step=0, steps_per_epoch=4)
    h.remove()
    assert len(seen) == 2 and seen[0] is vb[0] and seen[1] is tb[0]
    # plain 'all' keeps SNAS-style single level: one forward on the weights' batch
    st2 = make_strategy("gaea-darts-single", data_split="all")
    st2.setup(sp.choices(), model, seed=0)
    seen.clear()
    h = model.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    st2.step(tb, None, loss_fn=sp.loss, epoch=0, epochs=2, step=0, steps_per_epoch=4)
    h.remove()
    assert all(x is tb[0] for x in seen)


# ---- ProxylessNAS with both gates open (AdvantageNAS's multi_samp) and its warm-up -----------
def _pctx(sp, model, st, batch, warmup=False):
    return StepContext(model, st.arch, sp.loss, batch, batch, st.weight_params, st.lr, 0, 10,
                       0, 20, st.generator, total_arch_steps=100, arch_step_index=0,
                       warmup=warmup)


@pytest.mark.parametrize("seed", SEEDS)
def test_proxyless_both_gates_is_the_comparison_codes_two_hot_estimator(seed):
    torch.manual_seed(seed)
    sp = get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet().double()
    st = make_strategy("proxyless", gates="both")
    st.setup(sp.choices(), model, seed=seed)
    st.arch.double()
    with torch.no_grad():
        st.arch.theta["cell"].copy_(torch.randn(6, 5, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    x, y = sp.example_batch(6, g)
    batch = (x.double(), y)
    est = st.estimator
    ctx = _pctx(sp, model, st, batch)
    mix, record = est.arch_mix(ctx)
    w = mix.weights["cell"]
    assert torch.equal(w.detach().sum(-1), torch.full((6,), 2.0, dtype=w.dtype))
    out, loss = ctx.forward(mix)
    tg = torch.autograd.grad(loss, [w])
    grads = est.arch_grads(ctx, mix, record, tg, loss)["cell"]
    # util.py proxyless_grad: p~ = softmax(theta over the pair), grad_i += g_j p~_j (d_ij - p~_i)
    theta = st.arch.theta["cell"].detach()
    expected = torch.zeros(6, 5, dtype=torch.float64)
    for e in range(6):
        pair = torch.nonzero(w[e].detach()).flatten().tolist()
        pt = torch.softmax(theta[e, pair], -1)
        for i in range(2):
            for j in range(2):
                expected[e, pair[i]] += tg[0][e, pair[j]] * pt[j] * (float(i == j) - pt[i])
    assert torch.allclose(grads, expected, atol=1e-10)
    # the weight steps train the same 2-hot kind of architecture
    wm = est.weight_mix(ctx).weights["cell"]
    assert torch.equal(wm.sum(-1), torch.full((6,), 2.0, dtype=wm.dtype))
    # the paper's own: one gate of the pair open, one op in the weight step
    one = make_strategy("proxyless")
    one.setup(sp.choices(), model, seed=seed)
    assert torch.equal(one.estimator.arch_mix(_pctx(sp, model, one, batch))[0]
                       .weights["cell"].detach().sum(-1), torch.ones(6, dtype=w.dtype))
    assert one.settings()["warmup_epochs"] == 0.25 and one.settings()["gates"] == "one"


def test_the_advantagenas_protocols_open_both_gates_and_the_ptb_one_derives_as_section_5_3():
    from archgrad import protocols
    for name in ("advantagenas-toy", "advantagenas-nb201", "advantagenas-ptb"):
        assert protocols.load(name).search_kwargs("proxyless")["strategy_options"][
            "gates"] == "both", name
    ptb = protocols.load("advantagenas-ptb")
    assert len(ptb.seeds) == 5
    for s, d in (("reinforce", "process-best"), ("gdas", "process-best"),
                 ("proxyless", "argmax"), ("parsec", "argmax"), ("advantage", "argmax")):
        assert ptb.search_kwargs(s)["strategy_options"].get("derive", "argmax") == d, s
    assert ptb.search_kwargs("proxyless")["strategy_options"]["warmup_epochs"] == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_nasp_trains_random_samples_during_a_warm_up_and_the_argmax_after(seed):
    torch.manual_seed(seed)
    sp = get_space("nb201", C=4, N=1, fused=False)
    model = sp.supernet()
    st = make_strategy("nasp")
    st.setup(sp.choices(), model, seed=seed)
    batch = sp.example_batch(4, torch.Generator().manual_seed(seed))
    est = st.estimator
    warm = {tuple(est.weight_mix(_pctx(sp, model, st, batch, warmup=True)).weights["cell"]
                  .argmax(-1).tolist()) for _ in range(20)}
    after = {tuple(est.weight_mix(_pctx(sp, model, st, batch)).weights["cell"]
                   .argmax(-1).tolist()) for _ in range(5)}
    assert len(warm) > 10 and len(after) == 1
    assert list(after)[0] == tuple(st.arch.theta["cell"].argmax(-1).tolist())


# ---- the ImageNet evaluation network trains with DARTS's ImageNet recipe ---------------------
def test_the_imagenet_network_trains_with_darts_imagenet_recipe():
    from archgrad.engine.train import epoch_lr
    r = get_space("darts", network="imagenet").train_recipe()
    assert (r["epochs"], r["batch_size"], r["lr"], r["lr_gamma"], r["label_smoothing"],
            r["aux_weight"], r["cutout"], r["weight_decay"]) == \
        (250, 128, 0.1, 0.97, 0.1, 0.4, 0, 3e-5)
    assert [epoch_lr(r, e, 250) for e in (0, 1, 10)] == pytest.approx(
        [0.1, 0.097, 0.1 * 0.97 ** 10])
    c = get_space("darts").train_recipe()
    assert c["epochs"] == 600 and c["cutout"] == 16 and "label_smoothing" not in c
    assert epoch_lr(c, 300, 600) == pytest.approx(0.0125)


@pytest.mark.parametrize("seed", SEEDS)
def test_label_smoothing_is_darts_cross_entropy_label_smooth(seed):
    g = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(7, 10, generator=g), torch.randint(0, 10, (7,), generator=g)
    # cnn/train_imagenet.py CrossEntropyLabelSmooth, computed here
    t = torch.zeros(7, 10).scatter_(1, y[:, None], 1) * 0.9 + 0.1 / 10
    ref = (-t * torch.log_softmax(logits, 1)).mean(0).sum()
    got = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(got, ref, atol=1e-6)


def test_a_training_takes_the_exponential_schedule_and_label_smoothing(tmp_path):
    import archgrad
    res = archgrad.train("darts", "DARTS_V2", "synthetic", epochs=3, batch_size=32,
                         eval_every=0, space_options={"eval_C": 4, "eval_layers": 3},
                         lr=0.05, lr_schedule="exponential", lr_gamma=0.5,
                         label_smoothing=0.1, aux_weight=0.0, drop_path=0.0)
    assert [h["lr"] for h in res["history"]] == pytest.approx([0.05, 0.025, 0.0125])


# ---- AdvantageNAS's exact advantage (eq. 6) beside eq. 7 -------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_exact_advantage_is_the_loss_with_the_edge_zeroed_minus_the_loss(seed):
    torch.manual_seed(seed)
    sp = get_space("nb201", C=4, N=1, fused=False, ops=("none", "skip_connect", "nor_conv_1x1",
                                                          "nor_conv_3x3", "avg_pool_3x3"))
    model = sp.supernet().double().eval()
    st = make_strategy("advantage", estimate="exact")
    st.setup(sp.choices(), model, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x, y = sp.example_batch(6, g)
    batch = (x.double(), y)
    ctx = StepContext(model, st.arch, sp.loss, batch, batch, st.weight_params, st.lr, 0, 10, 0,
                      20, st.generator)
    est = st.estimator
    mix, idx = est.arch_mix(ctx)
    out, loss = ctx.forward(mix)
    raw = est.exact_advantages(ctx, mix, idx, loss)["cell"]
    ops = list(sp.choices()[0].ops)
    with torch.no_grad():
        for e in range(6):
            k = list(idx["cell"])
            k[e] = ops.index("none")
            l0 = sp.loss(model(batch[0], sp.discrete_mix(sp.genotype_from_indices({"cell": k}))),
                         batch[1])
            if idx["cell"][e] != ops.index("none"):
                assert float(raw[e]) == pytest.approx(float(l0 - loss), abs=1e-9)
    # eq. 7 (taylor) from the same sample differs from eq. 6 in general, agrees in sign often
    tg = torch.autograd.grad(loss, [mix.weights["cell"]])
    taylor = -tg[0][torch.arange(6), torch.tensor(idx["cell"])]
    assert taylor.shape == raw.shape
    grads = est.arch_grads(ctx, mix, idx, tg, loss)["cell"].double()
    p = st.arch.probs_detached()["cell"].double()
    onehot = torch.nn.functional.one_hot(torch.tensor(idx["cell"]), 5).double()
    # Algorithm 1 line 9 with eq. 6, descended: -A_i (onehot(a_i) - p_i), on every edge whose
    # sample is not the zero op (that one takes footnote 4's moving average)
    for e in range(6):
        if idx["cell"][e] != ops.index("none"):
            assert torch.allclose(grads[e], -raw[e] * (onehot[e] - p[e]), atol=1e-9)
    with pytest.raises(Exception, match="estimate"):
        make_strategy("advantage", estimate="first-order")
