"""Fidelity to the papers and their official code: property tests per estimator and update rule
(several seeds, every kind of edge), and every strategy's defaults held against a table typed
from the sources (a default that drifts from its paper fails here)."""
import math

import pytest
import torch

import archgrad
from archgrad.core.arch import ArchParams, Candidate, ChoiceGroup
from archgrad.core.ops import MixedOp
from archgrad.core.strategy import StepContext
from archgrad.methods import STRATEGIES, make_strategy, setting_source, strategy_settings
from archgrad.methods.gaea import ExponentiatedGradient
from archgrad.spaces import get_space
from archgrad.spaces.darts import PRIMITIVES, make_op

SEEDS = [0, 1, 2]

# ---- the source table ------------------------------------------------------------------------
# Typed from the papers and official code (docs/defaults.md names the line for each setting).
DARTS_W = dict(optimizer="sgd", lr=0.025, lr_min=0.001, momentum=0.9, nesterov=False,
               weight_decay=3e-4, grad_clip=5.0)
DARTS_A = dict(arch_optimizer="adam", arch_lr=3e-4, arch_betas=(0.5, 0.999),
               arch_weight_decay=1e-3, arch_grad_clip=None, arch_lr_schedule="constant")
EXPECTED = {
    "darts": {**DARTS_W, **DARTS_A, "bilevel": True, "data_split": "halves", "init": "0.001 N(0,1)"},
    "darts-2nd": {**DARTS_W, **DARTS_A, "xi": "lr", "eps_scale": 0.01, "unroll": "optimizer"},
    "darts-single": {**DARTS_W, **DARTS_A, "bilevel": False, "data_split": "all"},
    "snas": {**DARTS_W, **DARTS_A, "arch_grad_clip": 10.0, "epochs": 150, "bilevel": False,
             "data_split": "all", "temp_init": 1.0, "temp_min": 0.03, "rule": "snas",
             "temp_schedule": "linear"},
    "gdas": {**DARTS_W, **DARTS_A, "epochs": 240, "tau_max": 10.0, "tau_min": 0.1,
             "bilevel": True},
    "pcdarts": {**DARTS_W, **DARTS_A, "lr": 0.1, "lr_min": 0.001, "arch_lr": 6e-4,
                "batch_size": 256, "epochs": 50, "warmup_epochs": 0.3, "partial_channels": 4,
                "edge_weights": True},
    "gaea-darts": {**DARTS_W, "arch_optimizer": "exponentiated gradient", "arch_lr": 0.1,
                   "entropic": 0.0, "bilevel": True},
    "gaea-darts-single": {**DARTS_W, "arch_lr": 0.1, "bilevel": False,
                          "data_split": "all-resampled"},
    "gaea-gdas": {**DARTS_W, "arch_lr": 0.01, "entropic": 0.01, "tau_max": 10.0,
                  "tau_min": 0.1},
    "gaea-pcdarts": {**DARTS_W, "lr": 0.1, "lr_min": 0.0, "arch_lr": 0.1, "batch_size": 256,
                     "warmup_epochs": 0, "partial_channels": 4, "edge_weights": True},
    "pdarts": {**DARTS_W, **DARTS_A, "lr_min": 0.0, "arch_lr": 6e-4, "arch_grad_clip": 5.0,
               "batch_size": 96, "epochs": 75, "skip_dropout": (0.1, 0.4, 0.7),
               "stage_warmup": 0.4, "dropout_decay": 0.2, "max_skip": 2},
    "idarts": {**DARTS_W, **DARTS_A},
    "xnas": {**DARTS_W, "grad_bound": 1.0, "wipeout": True},
    "advantage": {**DARTS_W, **DARTS_A, "ema_coef": 0.05, "init": "uniform", "derive": "argmax",
                  "arch_first": False},
    "reinforce": {**DARTS_W, **DARTS_A, "baseline": True, "baseline_coef": 0.05},
    "parsec": {**DARTS_W, **DARTS_A, "samples": 8, "form": "paper"},
    "proxyless": {**DARTS_W, "arch_lr": 1e-3, "arch_betas": (0.0, 0.999),
                  "arch_weight_decay": 0.0, "arch_eps": 1e-8, "arch_every": 5,
                  "warmup_epochs": 0.25, "gates": "one"},
    "nasp": {**DARTS_W, **DARTS_A},
    "random-ws": {**DARTS_W, "arch_optimizer": "none", "derive": "rank-random"},
    # the methods the field compares against since 2020 (issue 25)
    "drnas": {**DARTS_W, **DARTS_A, "epochs": 100, "concentration_reg": "l2",
              "reg_scale": 1e-3, "bilevel": True},
    "drnas-progressive": {**DARTS_W, **DARTS_A, "epochs": 100, "stage_channels": (4, 2),
                          "stage_warmup": 0.2, "stages": 2},
    "darts-es": {**DARTS_W, **DARTS_A, "early_stop": "eigenvalue", "es_window": 5,
                 "es_factor": 1.3, "es_start": 10, "hessian_every": 1},
    "darts-pt": {**DARTS_W, **DARTS_A, "derive": "perturbation", "pt_tune_epochs": 5.0},
    "fairdarts": {**DARTS_W, **DARTS_A, "zero_one": 10.0, "bilevel": True},
    "sdarts-rs": {**DARTS_W, **DARTS_A, "perturb": "random", "perturb_eps": 0.3,
                  "perturb_eps_min": 0.03},
    "sdarts-adv": {**DARTS_W, **DARTS_A, "perturb": "adversarial", "perturb_eps": 0.3,
                   "perturb_eps_min": 0.03, "perturb_steps": 7},
    "darts-minus": {**DARTS_W, **DARTS_A, "aux_skip": 1.0, "auxiliary_skip": True},
    "beta-darts": {**DARTS_W, **DARTS_A, "beta_decay": 50.0, "beta_decay_span": 100},
    "lambda-darts": {**DARTS_W, **DARTS_A, "lambda_reg": 0.125, "lambda_eps": 1e-4},
    "oles": {**DARTS_W, **DARTS_A, "oles": 0.4, "oles_window": 20, "oles_match": "official"},
}


def test_every_strategy_is_in_the_source_table():
    assert set(EXPECTED) == set(STRATEGIES.names())


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_defaults_equal_the_source_table(name):
    got = strategy_settings(name)
    for k, v in EXPECTED[name].items():
        assert k in got, (name, k)
        assert got[k] == pytest.approx(v) if isinstance(v, float) else got[k] == v, \
            (name, k, got[k], v)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_default_names_its_source(name):
    for k in strategy_settings(name):
        assert setting_source(name, k), (name, k)


def test_defaults_document_is_current():
    from pathlib import Path

    from archgrad.methods import defaults_table
    doc = Path(__file__).resolve().parents[1] / "docs" / "defaults.md"
    assert doc.read_text() == defaults_table() + "\n", \
        "docs/defaults.md is stale: run python -m archgrad.methods"


# ---- PC-DARTS -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_partial_channels_keep_every_channel_in_place_on_the_darts_space(seed):
    """Two forwards of a partial-channel supernet with the same weights and input give the same
    output whatever the random state in between: no channel moves from step to step."""
    torch.manual_seed(seed)
    sp = get_space("darts", C=8, layers=3, partial_channels=4)
    model = sp.supernet().eval()
    x = torch.randn(2, 3, 8, 8)
    st = make_strategy("pcdarts")
    st.setup(sp.choices(), model, seed=seed)
    mix = st.estimator.eval_mix(st.arch)
    y1 = model(x, mix)
    torch.manual_seed(seed + 17)
    torch.rand(1000)
    y2 = model(x, mix)
    assert torch.equal(y1, y2)


# ---- GDAS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("sampled", range(len(PRIMITIVES)))
def test_gdas_gate_gradient_of_an_inactive_op_is_the_summed_output_gradient(seed, stride,
                                                                           sampled):
    """With the official straight-through term, d L / d h_k of a candidate k that was not
    computed equals sum(dL/dO) over the edge's output; of the computed one, <dL/dO, O_k>. On
    stride-2 edges the output is half the size (the fault this guards against)."""
    torch.manual_seed(seed)
    C = 4
    ops = [make_op(p, C, stride, search=True) for p in PRIMITIVES]
    mixed = MixedOp(ops, PRIMITIVES).train()
    x = torch.randn(2, C, 8, 8)
    h = torch.zeros(len(PRIMITIVES)).scatter_(0, torch.tensor([sampled]), 1.0)
    h.requires_grad_(True)
    out = mixed(x, h, [sampled], inactive_as_constant=True)
    assert out.shape[-1] == 8 // stride
    g_out = torch.randn_like(out)
    (out * g_out).sum().backward()
    for k in range(len(PRIMITIVES)):
        if k == sampled:
            if not mixed.zero[k]:
                with torch.no_grad():
                    o_k = ops[k](x)
                assert float(h.grad[k]) == pytest.approx(float((g_out * o_k).sum()), rel=1e-4,
                                                         abs=1e-5)
        else:
            assert float(h.grad[k]) == pytest.approx(float(g_out.sum()), rel=1e-5, abs=1e-5)


# ---- GAEA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("entropic", [0.0, 0.01])
def test_exponentiated_gradient_step_stays_on_the_simplex(seed, entropic):
    g = torch.Generator().manual_seed(seed)
    cands = tuple(Candidate(f"op{i}") for i in range(5))
    group = ChoiceGroup("normal", cands, ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3)))
    upd = ExponentiatedGradient(lr=0.5, entropic=entropic, init_scale=0.3)
    arch = ArchParams([group], upd.parameterization, g, edge_weights=True)
    upd.bind(arch)
    for _ in range(20):
        grads = {k: 10 * torch.randn(arch.param(k).shape, generator=g) for k in arch.param_keys()}
        upd.step(grads)
        a = arch.param("normal").detach()
        assert (a >= 0).all() and torch.allclose(a.sum(-1), torch.ones(5), atol=1e-6)
        beta = arch.param("normal:edges").detach()
        for rows in arch.nodes("normal"):
            assert float(beta[rows].sum()) == pytest.approx(1.0, abs=1e-6)
        assert (beta >= 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_exponentiated_gradient_is_the_mirror_descent_formula(seed):
    """a' = a exp(-eta g) / sum(a exp(-eta g)) per row (no floor hit, no regulariser)."""
    g = torch.Generator().manual_seed(seed)
    group = ChoiceGroup("c", tuple(Candidate(f"o{i}") for i in range(4)), ((0, 1), (0, 2)))
    upd = ExponentiatedGradient(lr=0.3, init_scale=0.5)
    arch = ArchParams([group], upd.parameterization, g)
    upd.bind(arch)
    a0 = arch.theta["c"].detach().clone()
    grad = torch.randn(2, 4, generator=g)
    upd.step({"c": grad})
    want = a0 * torch.exp(-0.3 * grad)
    assert torch.allclose(arch.theta["c"], want / want.sum(-1, keepdim=True), atol=1e-6)


# ---- DARTS second order -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_unrolled_weights_follow_the_official_formula(seed):
    """w' = w - xi (mu m + g + lambda w), the step SGD with momentum mu, buffer m and weight
    decay lambda would take (official architect._compute_unrolled_model)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    st = make_strategy("darts-2nd", momentum=0.7, weight_decay=0.01)
    opt = st.weights_cfg.make(list(model.parameters()))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for _ in range(2):  # a momentum buffer to unroll with
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    W = list(model.parameters())
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), W)
    ctx = StepContext(model, None, None, None, None, W, 0.05, 0, 1, 0, 1, None,
                      weight_opt=opt, weights_cfg=st.weights_cfg)
    steps = st.estimator.unrolled_step(ctx, W, grads, xi=0.05)
    for w, g, dw in zip(W, grads, steps):
        m = opt.state[w]["momentum_buffer"]
        assert torch.allclose(w + dw, w - 0.05 * (0.7 * m + g + 0.01 * w), atol=1e-7)
    # 'sgd' unrolling: w' = w - xi g
    st.estimator.unroll = "sgd"
    for g, dw in zip(grads, st.estimator.unrolled_step(ctx, W, grads, 0.05, "sgd")):
        assert torch.allclose(dw, -0.05 * g)


# ---- SNAS ---------------------------------------------------------------------------------------
def test_snas_derives_the_child_graph_on_the_darts_space():
    sp = get_space("darts", C=4, layers=3)
    st = make_strategy("snas")
    st.setup(sp.choices(), sp.supernet(), seed=0)
    with torch.no_grad():  # 'none' strongest on every edge but edge 0 of the normal cell
        for label in ("normal", "reduce"):
            st.arch.theta[label].fill_(0.0)
            st.arch.theta[label][:, 0] = 5.0
        st.arch.theta["normal"][0, 4] = 9.0
    g = st.derive(sp)
    assert g.normal == (("sep_conv_3x3", 0),) and g.reduce == ()
    # on nb201 the same strategy derives the per-edge argmax (the space's only rule)
    sp2 = get_space("nb201", C=4, N=1)
    st2 = make_strategy("snas")
    st2.setup(sp2.choices(), sp2.supernet(), seed=0)
    assert len(st2.derive(sp2).ops) == 6


# ---- ProxylessNAS -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_proxyless_leaves_edges_whose_open_gate_is_zero_untouched(seed):
    sp = get_space("nb201", C=4, N=1, fused=False)
    st = make_strategy("proxyless")
    st.setup(sp.choices(), sp.supernet(), seed=seed)
    g = torch.Generator().manual_seed(seed)
    vb = sp.example_batch(8, g)
    for _ in range(6):
        ctx = StepContext(st.model, st.arch, sp.loss, vb, vb, st.weight_params, 0.025, 0, 1, 0, 1,
                          st.generator)
        before = st.arch.theta["cell"].detach().clone()
        m_before = st.update.opt.state.get(st.arch.theta["cell"], {}).get("exp_avg")
        m_before = None if m_before is None else m_before.clone()
        st.arch_step(ctx)
        frozen = torch.tensor(st.estimator.frozen["cell"])
        after = st.arch.theta["cell"]
        assert torch.equal(after[frozen], before[frozen])
        if m_before is not None:
            assert torch.equal(st.update.opt.state[st.arch.theta["cell"]]["exp_avg"][frozen],
                               m_before[frozen])
        if (~frozen).any():
            assert not torch.equal(after[~frozen], before[~frozen])


def test_proxyless_steps_the_architecture_every_fifth_iteration():
    sp = get_space("nb201", C=4, N=1)
    st = make_strategy("proxyless")
    st.setup(sp.choices(), sp.supernet(), seed=0)
    g = torch.Generator().manual_seed(0)
    b = sp.example_batch(4, g)
    arch_steps = [("arch_loss" in st.step(b, b, loss_fn=sp.loss, epoch=0, epochs=1, step=i,
                                         steps_per_epoch=10)) for i in range(10)]
    assert arch_steps == [False] * 4 + [True] + [False] * 4 + [True]


# ---- process best ------------------------------------------------------------------------------
def test_process_best_is_the_single_best_minibatch_and_the_mean_variant_exists():
    st = make_strategy("reinforce", derive="process-best")
    from archgrad.core.strategy import ArchStepResult
    a, b = {"cell": [1, 1, 1, 1, 1, 1]}, {"cell": [2, 2, 2, 2, 2, 2]}
    # a: one lucky minibatch (-0.1) among bad ones; b: consistently good
    for arch, r in ((a, -0.1), (a, -3.0), (a, -3.0), (b, -0.5), (b, -0.5)):
        st._track(ArchStepResult({}, {}, [(arch, r)]))
    assert st.process_best("process-best") == a       # official: the single best minibatch
    assert st.process_best("process-best-mean") == b  # mean reward over its samples
    assert make_strategy("reinforce", derive="process-best-mean").derive_mode \
        == "process-best-mean"


# ---- single level on all of the data ---------------------------------------------------------
@pytest.mark.parametrize("name", ["darts-single", "gaea-darts-single", "snas"])
def test_single_level_trains_on_all_of_the_training_data(name):
    res = archgrad.search(strategy=name, dataset="synthetic", epochs=1, C=4, N=1, device="cpu",
                          batch_size=32)
    data = archgrad.data.load_dataset("synthetic")
    assert res.history[0]["steps"] == len(data.y_train) // 32       # every example, not half
    assert res.final["eval_split"] == "test"
    bi = archgrad.search(strategy="darts", dataset="synthetic", epochs=1, C=4, N=1,
                         device="cpu", batch_size=32)
    assert bi.history[0]["steps"] == len(data.y_train) // 2 // 32


# ---- the supernet evaluated as it trains ------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in STRATEGIES.names()
                                  if not make_strategy(n).estimator.dense])
def test_sampling_strategies_evaluate_the_networks_they_train(name):
    """A sampling strategy's supernet is evaluated under its samples (repeatably, without
    touching the search's generator), not under the dense mix it never trains."""
    sp = get_space("nb201", C=4, N=1)
    st = make_strategy(name)
    st.setup(sp.choices(), sp.supernet(), seed=0)
    state = st.generator.get_state()
    draw = st.estimator.eval_mix(st.arch, torch.Generator().manual_seed(3), 0, 10)
    assert callable(draw)
    mixes = [draw() for _ in range(4)]
    for m in mixes:
        for label, act in m.active.items():
            assert all(len(a) <= 1 for a in act)  # one candidate per edge
    assert torch.equal(st.generator.get_state(), state)
    again = st.estimator.eval_mix(st.arch, torch.Generator().manual_seed(3), 0, 10)
    assert [m.active for m in mixes] == [again().active for _ in range(4)]


def test_result_says_how_the_supernet_was_evaluated():
    res = archgrad.search(strategy="gdas", dataset="synthetic", epochs=1, C=4, N=1,
                          device="cpu")
    assert res.final["supernet_eval"] == (
        "one architecture sampled from p (hard sample) per validation batch (a batch: 64 "
        "examples, the training batch size), BN with each batch's statistics as in training")
    res = archgrad.search(strategy="darts", dataset="synthetic", epochs=1, C=4, N=1,
                          device="cpu")
    assert "dense" in res.final["supernet_eval"]
    # a network without batch norms (the toy task) is not said to use batch statistics
    res = archgrad.search(space="toy", strategy="reinforce", epochs=1, device="cpu")
    assert res.final["supernet_eval"] == "one architecture sampled from p per validation batch"


# ---- AdvantageNAS's toy task --------------------------------------------------------------------
def test_toy_space_uses_the_papers_adam_for_adam_strategies():
    res = archgrad.search(space="toy", strategy="advantage", epochs=1, steps_per_epoch=2,
                          device="cpu")
    st = res.config.strategy_options
    assert st["arch_lr"] == 1e-3 and tuple(st["arch_betas"]) == (0.9, 0.999)
    assert st["arch_weight_decay"] == 0.0
    res = archgrad.search(space="toy", strategy="advantage", epochs=1, steps_per_epoch=2,
                          arch_lr=0.01, device="cpu")
    assert res.config.strategy_options["arch_lr"] == 0.01  # the user's value wins
    res = archgrad.search(space="toy", strategy="gaea-darts", epochs=1, steps_per_epoch=2,
                          device="cpu")
    assert "arch_betas" not in res.config.strategy_options  # not an Adam strategy


def test_arch_lr_cosine_schedule_anneals_over_the_architecture_epochs():
    st = make_strategy("advantage", arch_lr_schedule="cosine", arch_lr=3e-4)
    sp = get_space("nb201", C=4, N=1)
    st.setup(sp.choices(), sp.supernet(), seed=0)
    lrs = []
    for arch_epoch in range(4):
        ctx = StepContext(None, None, None, None, None, [], 0.1, 0, 1, 0, 10, None,
                          total_arch_steps=40, arch_step_index=10 * arch_epoch)
        lrs.append(st.update.lr_at(ctx))
    assert lrs == pytest.approx([3e-4 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
