"""The DARTS convolutional space: genotypes, derivation rules, networks, costs, P-DARTS, I-DARTS,
diagrams."""
import re

import pytest
import torch

import archgrad
from archgrad.core.costs import op_cost
from archgrad.core.ops import count_parameters
from archgrad.errors import ArchgradError, GenotypeError
from archgrad.methods import make_strategy
from archgrad.spaces import get_space
from archgrad.spaces.darts import NAMED_GENOTYPES, PRIMITIVES, DartsGenotype, make_op

V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
      "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
      "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
      "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
      "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


# ---- genotypes -------------------------------------------------------------------------------
def test_published_genotypes_print_in_darts_format_and_round_trip():
    assert str(NAMED_GENOTYPES["DARTS_V2"]) == V2
    assert NAMED_GENOTYPES["DARTS"] == NAMED_GENOTYPES["DARTS_V2"]
    for name, g in NAMED_GENOTYPES.items():
        assert DartsGenotype.parse(str(g)) == g, name
        assert DartsGenotype.parse(name) == g
    nasnet = NAMED_GENOTYPES["NASNet"]
    assert len(nasnet.normal) == 10 and nasnet.normal_concat == (2, 3, 4, 5, 6)
    assert NAMED_GENOTYPES["AmoebaNet"].reduce[-2] == ("conv_7x1_1x7", 0)


def test_parse_accepts_range_and_positional_forms():
    g = DartsGenotype.parse(V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)"))
    assert g == NAMED_GENOTYPES["DARTS_V2"]
    g2 = DartsGenotype.parse("Genotype(" + V2[len("Genotype(normal="):].replace(
        "normal_concat=", "").replace("reduce=", "").replace("reduce_concat=", ""))
    assert g2 == NAMED_GENOTYPES["DARTS_V2"]


@pytest.mark.parametrize("bad", [
    "Genotype(normal=[('sep_conv_3x3', 0)])",
    V2.replace("sep_conv_3x3", "sep_conv_9x9", 1),
    V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
    "DARTS_V3", "Genotype(normal=[", "print('hi')",
    V2.replace("reduce_concat", "reduce_concats"),
])
def test_malformed_darts_genotypes(bad):
    with pytest.raises(GenotypeError) as e:
        DartsGenotype.parse(bad)
    assert "\n" not in str(e.value)


# ---- networks ---------------------------------------------------------------------------------
def test_darts_v2_parameter_count_without_the_auxiliary_head():
    net = archgrad.build("darts", "DARTS_V2")
    assert count_parameters(net) == 3_349_342
    assert any(n.startswith("auxiliary.") for n, _ in net.named_parameters())
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["NASNet", "AmoebaNet", "DARTS_V1"])
def test_published_genotypes_build_and_run(name):
    net = archgrad.build("darts", name, eval_C=8, eval_layers=5).eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_imagenet_network():
    net = archgrad.build("darts", "DARTS_V2", network="imagenet", num_classes=1000).eval()
    assert count_parameters(net) == 4_718_752  # the official train_imagenet.py's 4.718752 MB
    assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    # convolutions and linear layers: 523 M in quark0/darts issue #46 (the paper: 574 M,
    # counted some other way)
    from archgrad.engine.profile import count_flops
    assert 520e6 < count_flops(net, (3, 224, 224)) < 535e6


def test_search_network_shapes():
    sp = get_space("darts")
    normal, reduce = sp.choices()
    assert normal.shape == reduce.shape == (14, 8) and normal.ops == PRIMITIVES
    net = get_space("darts", C=4, layers=5).supernet()
    assert sum(c.reduction for c in net.cells) == 2
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    strat = make_strategy("darts")
    strat.setup(sp.choices(), net, seed=0)
    assert net(torch.randn(2, 3, 16, 16), strat.estimator.eval_mix(strat.arch)).shape == (2, 10)


# ---- derivation -------------------------------------------------------------------------------
def _probs(sp, strong):
    """Near-uniform probabilities with chosen (edge, op) entries made strong."""
    ops = sp.choices()[0].ops
    p = {k: torch.full((14, 8), 0.1) for k in ("normal", "reduce")}
    for (cell, e, op), v in strong.items():
        p[cell][e, ops.index(op)] = v
    return p


def test_darts_rule_keeps_two_strongest_non_none_inputs_per_node():
    sp = get_space("darts")
    # node 2 (edges 0, 1); node 3 (edges 2, 3, 4): 'none' is strongest on edge 3 and ignored
    p = _probs(sp, {("normal", 0, "sep_conv_3x3"): 0.5, ("normal", 1, "max_pool_3x3"): 0.3,
                    ("normal", 3, "none"): 0.9, ("normal", 4, "dil_conv_5x5"): 0.6,
                    ("normal", 2, "skip_connect"): 0.4})
    g = sp.derive(p)
    node2, node3 = g.nodes("normal")[:2]
    assert node2 == [("sep_conv_3x3", 0), ("max_pool_3x3", 1)]
    assert node3 == [("dil_conv_5x5", 2), ("skip_connect", 0)]
    assert all(len(n) == 2 for n in g.nodes("normal")) and g.normal_concat == (2, 3, 4, 5)


def test_snas_rule_keeps_the_child_graph():
    sp = get_space("darts", rule="snas")
    p = _probs(sp, {("normal", e, "none"): 0.9 for e in range(14)})
    p["normal"][0, PRIMITIVES.index("sep_conv_5x5")] = 0.95
    p["normal"][4, PRIMITIVES.index("skip_connect")] = 0.95
    g = sp.derive(p)
    assert g.nodes("normal") == [[("sep_conv_5x5", 0)], [("skip_connect", 2)], [], []]
    assert g.normal_inputs == (1, 1, 0, 0)
    assert "normal_inputs=[1, 1, 0, 0]" in str(g) and sp.parse(str(g)) == g
    assert archgrad.build("darts", g, eval_C=4, eval_layers=3).eval()(
        torch.randn(1, 3, 16, 16)).shape == (1, 10)


def test_edge_weights_reorder_the_inputs():
    sp = get_space("darts")
    p = _probs(sp, {("normal", 0, "sep_conv_3x3"): 0.5, ("normal", 1, "sep_conv_3x3"): 0.45})
    w = {"normal": torch.ones(14), "reduce": torch.ones(14)}
    w["normal"][0] = 0.1  # PC-DARTS's beta weakens edge 0
    assert sp.derive(p).nodes("normal")[0][0] == ("sep_conv_3x3", 0)
    assert sp.derive(p, edge_weights=w).nodes("normal")[0][0] == ("sep_conv_3x3", 1)


def test_max_skip_replaces_the_weakest_skip_connections():
    sp = get_space("darts")
    strong = {("normal", e, "skip_connect"): 0.5 + 0.01 * e for e in range(14)}
    strong.update({("normal", e, "sep_conv_3x3"): 0.4 for e in range(14)})
    g = sp.derive(_probs(sp, strong), max_skip=2)
    assert sum(o == "skip_connect" for o, _ in g.normal) == 2
    nb = get_space("nb201")
    p = torch.full((6, 5), 0.1)
    p[:, 1] = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9, 0.55])
    p[:, 3] = 0.3
    assert str(nb.derive({"cell": p}, max_skip=2)).count("skip_connect") == 2


def test_idarts_node_level_distribution_and_derivation():
    sp = get_space("darts")
    st = make_strategy("idarts")
    st.setup(sp.choices(), sp.supernet(), seed=0)
    with torch.no_grad():
        st.arch.theta["normal"][2, PRIMITIVES.index("sep_conv_3x3")] = 5.0  # edge 2<-0 of node 3
    p = st.arch.probs_detached()["normal"]
    for rows in sp.choices()[0].incoming().values():
        assert p[rows].sum().item() == pytest.approx(1.0, abs=1e-6)
    assert p[2].sum() > 0.9  # the edge now takes most of node 3's mass
    assert st.derive(sp).nodes("normal")[1][0] == ("sep_conv_3x3", 0)


# ---- costs (SNAS Appendix F) ------------------------------------------------------------------
def test_cost_formulas_on_single_ops():
    C, H = 8, 16
    hw = H * H
    # sep_conv_3x3: twice (depthwise 3x3 with groups=C, pointwise 1x1)
    params, flops, mac = op_cost(make_op("sep_conv_3x3", C, 1), (C, H, H))
    conv_dw, conv_pw = 9 * C * C / C, C * C
    assert params == 2 * (conv_dw + conv_pw)
    assert flops == hw * params
    assert mac == 4 * hw * (C + C) + params
    # dilated: one depthwise 3x3 and one pointwise; stride 2 quarters the output
    params, flops, mac = op_cost(make_op("dil_conv_3x3", C, 2), (C, H, H))
    assert params == conv_dw + conv_pw and flops == (hw / 4) * params
    # pooling FLOPs H W f k I O (eq. 38), MAC H W (I + O); skip: MAC only; none: nothing
    assert op_cost(make_op("avg_pool_3x3", C, 1), (C, H, H)) == (0, hw * 9 * C * C, hw * 2 * C)
    assert op_cost(make_op("skip_connect", C, 1), (C, H, H)) == (0, 0, hw * 2 * C)
    assert op_cost(make_op("none", C, 1), (C, H, H)) == (0, 0, 0)
    # skip with stride 2 is a factorized reduce: two 1x1 convs to C/2 each
    params, _, _ = op_cost(make_op("skip_connect", C, 2), (C, H, H))
    assert params == 2 * C * C / 2


def test_space_costs_cover_every_edge():
    costs = get_space("darts", C=4, layers=5).op_costs(image_size=16)
    assert costs["normal"].shape == costs["reduce"].shape == (14, 8, 3)
    ops = get_space("darts").choices()[0].ops
    sep3, sep5 = ops.index("sep_conv_3x3"), ops.index("sep_conv_5x5")
    assert (costs["normal"][:, sep5, 0] > costs["normal"][:, sep3, 0]).all()
    assert (costs["normal"][:, ops.index("none")] == 0).all()


# ---- P-DARTS ----------------------------------------------------------------------------------
def test_pdarts_stages_prune_and_deepen():
    from archgrad.spaces.darts import DartsSpace
    st = make_strategy("pdarts")
    st.bind_space(DartsSpace)
    stages = st.stages_for(75)
    assert [(s.start, s.end) for s in stages] == [(0, 25), (25, 50), (50, 75)]
    assert [s.space["layers"] for s in stages] == [5, 11, 17]
    assert [s.warmup for s in stages] == [10, 10, 10]
    sp = get_space("darts", C=4, layers=5)
    st.setup(sp.choices(), sp.supernet(), seed=0)
    assert st.begin_stage(1, stages[1], get_space("darts", C=4, layers=11).supernet()) \
        == {"n_pruned": 2 * 14 * 3}
    assert (st.arch.alive("normal").sum(-1) == 5).all()
    st.begin_stage(2, stages[2], sp.supernet())
    assert (st.arch.alive("reduce").sum(-1) == 3).all()
    assert st.derive_options["max_skip"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("space,given,depths", [("darts", 3, [3, 9, 15]),
                                                ("darts", 8, [8, 14, 20]),
                                                ("nb201", 2, [2, 4, 6]), ("nb201", 1, [1, 3, 5])])
def test_pdarts_a_depth_given_for_the_space_is_the_first_stages(space, given, depths):
    """As the official --layers and --add_layers: the given depth, then the space's increments."""
    from archgrad.search import plan_search
    opt = {"darts": "layers", "nb201": "N"}[space]
    plan = plan_search(space=space, strategy="pdarts", dataset="synthetic", epochs=3, C=4,
                       **{opt: given})
    assert [st["space"][opt] for st in plan["stage_plan"]] == depths
    assert plan["space_options"][opt] == given


@pytest.mark.parametrize("options,needle", [
    ({"stage_depths": (3, 4)}, "one depth per stage"),
    ({"keep": (5,)}, "after the first (2 numbers)"),
    ({"layers": 8, "stage_depths": (5, 11, 17)}, "disagree on the first stage's depth"),
])
def test_pdarts_refuses_stage_settings_that_do_not_fit(options, needle):
    with pytest.raises(ArchgradError, match=re.escape(needle)):
        archgrad.search(space="darts", strategy="pdarts", dataset="synthetic", epochs=3, C=4,
                        device="cpu", **options)


def test_pdarts_skip_dropout_and_learning_rate_follow_the_official_schedule():
    """Per stage of E epochs with W warm-up epochs: dropout rate * (E - e - 1) / E during the
    warm-up, rate * exp(-0.2 (e - W)) after it; the learning rate restarts its cosine from 0.025
    at every stage (official train_search.py)."""
    import math
    st = make_strategy("pdarts")
    epochs = 75
    stages = st.stages_for(epochs)
    assert [(s.start, s.end, s.warmup) for s in stages] == [(0, 25, 10), (25, 50, 10),
                                                             (50, 75, 10)]
    for i, rate in enumerate((0.1, 0.4, 0.7)):
        for e in range(25):
            want = rate * (25 - e - 1) / 25 if e < 10 else rate * math.exp(-0.2 * (e - 10))
            assert st.dropout_rate(25 * i + e, epochs) == pytest.approx(want)
    sp = get_space("nb201", C=4, N=1)
    st.setup(sp.choices(), sp.supernet(), seed=0)
    lrs = [st.set_lr(e, epochs) for e in (0, 12, 24, 25, 50, 74)]
    assert lrs[0] == lrs[3] == lrs[4] == pytest.approx(0.025)
    assert lrs[1] == pytest.approx(0.0125 * (1 + math.cos(math.pi * 12 / 25)))
    assert lrs[5] == lrs[2] == pytest.approx(0.0125 * (1 + math.cos(math.pi * 24 / 25)))
    g = torch.Generator().manual_seed(0)
    b = sp.example_batch(4, g)
    st.step(b, b, loss_fn=sp.loss, epoch=3, epochs=epochs, step=0, steps_per_epoch=1)
    assert st.estimator.skip_dropout == pytest.approx(0.1 * 21 / 25)


def test_pdarts_drops_out_identity_skips_only():
    """On a stride-2 edge the skip connection is a FactorizedReduce: no dropout there."""
    from archgrad.core.ops import MixedOp
    from archgrad.spaces.darts import make_op
    torch.manual_seed(0)
    x = torch.randn(4, 4, 6, 6)
    for stride, dropped in ((1, True), (2, False)):
        m = MixedOp([make_op("skip_connect", 4, stride)]).train()
        y1 = m(x, torch.ones(1), [0], skip_dropout=0.5)
        y0 = m(x, torch.ones(1), [0], skip_dropout=0.0)
        assert (not torch.equal(y1, y0)) == dropped, stride


def test_pdarts_clips_the_architecture_gradient():
    st = make_strategy("pdarts")
    assert st.update.grad_clip == 5.0
    sp = get_space("nb201", C=4, N=1)
    st.setup(sp.choices(), sp.supernet(), seed=0)
    before = st.arch.theta["cell"].detach().clone()
    st.update.opt.param_groups[0]["betas"] = (0.0, 0.0)  # the step is then lr * g / |g|
    st.update.step({"cell": torch.full((6, 5), 1e6)})
    step = (st.arch.theta["cell"] - before).abs()
    # clipped to norm 5 first; Adam's per-entry normalisation then gives lr per entry
    assert torch.allclose(step, torch.full((6, 5), 6e-4), rtol=1e-3)


@pytest.mark.slow
def test_pdarts_search_runs_end_to_end(tmp_path):
    res = archgrad.search(space="darts", strategy="pdarts", dataset="synthetic", epochs=3, C=4,
                          stage_depths=(3, 4, 5), out=tmp_path / "r", device="cpu")
    assert [r["stage"] for r in res.history] == [1, 2, 3]
    assert res.history[1]["n_pruned"] == 2 * 14 * 3 and res.history[2]["n_pruned"] == 2 * 14 * 2
    assert sum(o == "skip_connect" for o, _ in res.genotype.normal) <= 2
    assert (tmp_path / "r" / "cell.svg").is_file()


# ---- training and diagrams --------------------------------------------------------------------
def test_train_darts_with_auxiliary_drop_path_and_cutout(tmp_path):
    res = archgrad.train("darts", "DARTS_V2", "synthetic", epochs=2, batch_size=32, eval_C=4,
                         eval_layers=3, out=tmp_path / "t", device="cpu", cutout=4)
    assert 0 <= res["test_acc"] <= 100 and res["params"] < 1e5


def test_draw_writes_png_and_svg(tmp_path, capsys):
    from archgrad.cli import main
    assert main(["draw", "DARTS_V2", "--space", "darts", "--out", str(tmp_path / "v2")]) == 0
    assert (tmp_path / "v2.png").stat().st_size > 1000 and (tmp_path / "v2.svg").is_file()
    nb = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    assert main(["draw", nb, "--out", str(tmp_path / "nb")]) == 0
    assert (tmp_path / "nb.png").is_file()


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "NASNet", "AmoebaNet"])
def test_the_run_records_count_normal_skips_and_evaluation_parameters(name):
    sp = get_space("darts")
    rep = sp.report(None, name)
    g = sp.genotype(name)
    assert rep["skip_connects"] == [op for op, _ in g.normal].count("skip_connect")
    assert rep["eval_params"] == count_parameters(sp.build(name))  # meta count = real count
    assert get_space("darts").report(None, "DARTS_V2")["skip_connects"] == 2


def test_a_search_records_the_derived_cells_skips_every_epoch(tmp_path):
    for space, kw in (("darts", dict(C=4, layers=3)), ("nb201", dict(C=4, N=1))):
        res = archgrad.search(space=space, strategy="darts", dataset="synthetic", epochs=2,
                              device="cpu", **kw)
        sp = get_space(space)
        for rec in res.history:
            g = sp.genotype(rec["genotype"])
            ops = [op for op, _ in g.normal] if space == "darts" else list(g.ops)
            assert rec["skip_connects"] == ops.count("skip_connect")
        assert res.final["skip_connects"] == (
            [op for op, _ in sp.genotype(res.genotype).normal] if space == "darts"
            else list(sp.genotype(res.genotype).ops)).count("skip_connect")


# ---- RobustDARTS's reduced spaces (issue 26) --------------------------------------------------
def test_robust_spaces_hold_the_candidates_their_paper_lists():
    from archgrad.core.arch import ArchParams, Softmax
    from archgrad.spaces.darts import ROBUST_SPACES
    for name, ops in (("s2", {"skip_connect", "sep_conv_3x3"}),
                      ("s3", {"none", "skip_connect", "sep_conv_3x3"}),
                      ("s4", {"noise", "sep_conv_3x3"})):
        sp = get_space("darts", robust_space=name, C=4, layers=3)
        for g in sp.choices():
            assert set(g.ops) == ops and g.allowed is None, name
    sp = get_space("darts", robust_space="s1", C=4, layers=3)
    arch = ArchParams(sp.choices(), Softmax())
    for g in sp.choices():
        table = ROBUST_SPACES["s1"][g.label]
        alive = arch.alive(g.label)
        for e, pair in enumerate(table):
            assert {g.ops[k] for k in range(len(g.ops)) if alive[e, k]} == set(pair), (g.label, e)
    # the derivation, a sampled architecture and the built network keep to each edge's pair
    probs = {k: torch.rand(v.shape) * arch.alive(k) for k, v in arch.probs_detached().items()}
    geno = sp.derive(probs)
    for label, cell in (("normal", geno.normal), ("reduce", geno.reduce)):
        table = ROBUST_SPACES["s1"][label]
        idx = sp.indices(geno)[label]
        grp = sp.groups()[label]
        for e, k in enumerate(idx):
            if k >= 0:
                assert grp.ops[k] in table[e], (label, e, grp.ops[k])
    sp.build(geno)


def test_the_noise_op_draws_standard_normal_noise_of_the_output_shape():
    from archgrad.core.ops import Noise
    x = torch.zeros(4, 8, 16, 16)
    torch.manual_seed(0)
    y = Noise(1)(x)
    assert y.shape == x.shape and abs(float(y.mean())) < 0.05 and abs(float(y.std()) - 1) < 0.05
    assert Noise(2)(x).shape == (4, 8, 8, 8)


@pytest.mark.parametrize("opts,match", [
    ({"robust_space": "s5"}, "robust_space"),
    ({"robust_space": "s2", "ops": ["none", "skip_connect"]}, "not both"),
    ({"robust_space": "s1", "steps": 3, "multiplier": 3}, "14 edges"),
])
def test_bad_robust_space_options_are_one_line(opts, match):
    with pytest.raises(ArchgradError, match=match) as e:
        get_space("darts", **opts)
    assert "\n" not in str(e.value)
