"""GAEA (exponentiated gradient), XNAS (expert advice with wipeout), PC-DARTS (partial channels,
edge normalisation)."""
import math

import pytest
import torch

import archgrad
from archgrad.core.arch import ArchParams, Candidate, ChoiceGroup, Mix
from archgrad.core.ops import MixedOp, PartialMixedOp, channel_shuffle
from archgrad.core.strategy import StepContext
from archgrad.methods import make_strategy
from archgrad.methods.gaea import ExponentiatedGradient
from archgrad.methods.xnas import XNASUpdate, wipeout_threshold
from archgrad.spaces import get_space

GROUP = ChoiceGroup("cell", tuple(Candidate(f"op{j}") for j in range(5)),
                    ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)))


def _eg(lr=0.1, entropic=0.0, edge_weights=False, seed=0):
    upd = ExponentiatedGradient(lr, entropic, init_scale=0.3)
    arch = ArchParams([GROUP], upd.parameterization, torch.Generator().manual_seed(seed),
                      edge_weights=edge_weights).double()
    upd.bind(arch)
    return upd, arch


# ---- GAEA ---------------------------------------------------------------------------------------
def test_eg_update_is_the_closed_form_mirror_descent_step():
    upd, arch = _eg(lr=0.7)
    p = arch.theta["cell"].detach().clone()
    g = torch.randn(6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    upd.step({"cell": g})
    q = arch.theta["cell"].detach()
    closed = p * torch.exp(-0.7 * g)
    closed = closed / closed.sum(-1, keepdim=True)
    assert torch.allclose(q, closed, atol=1e-12)

    # and it minimises the mirror-descent objective eta <g, x> + KL(x || p) over the simplex
    def objective(x):
        return (0.7 * (g * x) + x * torch.log(x / p)).sum(-1)

    others = torch.distributions.Dirichlet(torch.ones(5, dtype=torch.float64)).sample((500, 6))
    assert (objective(q) <= objective(others) + 1e-12).all()


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3, 1e8])
def test_eg_keeps_every_row_on_the_simplex_for_any_gradient(scale):
    upd, arch = _eg(lr=0.1, edge_weights=True)
    gen = torch.Generator().manual_seed(int(scale * 7) % 1000)
    for _ in range(20):
        upd.step({"cell": scale * torch.randn(6, 5, generator=gen, dtype=torch.float64),
                  "cell:edges": scale * torch.randn(6, generator=gen, dtype=torch.float64)})
        a = arch.theta["cell"]
        assert (a >= 0).all() and torch.allclose(a.sum(-1), torch.ones(6, dtype=a.dtype))
        b = arch.beta["cell"]
        for node in arch.nodes("cell"):
            assert (b[node] >= 0).all() and b[node].sum().item() == pytest.approx(1.0)


def test_entropic_regulariser_pulls_towards_uniform():
    upd, arch = _eg(lr=0.5, entropic=1.0)
    h0 = -(arch.theta["cell"] * arch.theta["cell"].log()).sum()
    upd.step({"cell": torch.zeros(6, 5, dtype=torch.float64)})
    h1 = -(arch.theta["cell"] * arch.theta["cell"].log()).sum()
    assert h1 > h0


@pytest.mark.parametrize("name", ["gaea-darts", "gaea-darts-single", "gaea-gdas",
                                  "gaea-pcdarts"])
def test_gaea_variants_search_on_the_simplex(name):
    res = archgrad.search(strategy=name, dataset="synthetic", epochs=2, C=4, N=1, device="cpu",
                          warmup_epochs=0)
    for row in res.probs["cell"]:
        assert min(row) >= 0 and sum(row) == pytest.approx(1.0, abs=1e-5)
    st = make_strategy(name)
    assert st.update.parameterization.name == "simplex"
    assert st.update.lr == {"gaea-gdas": 0.01}.get(name, 0.1)


# ---- XNAS ---------------------------------------------------------------------------------------
def _xnas(T, L=1.0, lr=None, n_ops=5):
    group = ChoiceGroup("cell", tuple(Candidate(f"op{j}") for j in range(n_ops)), ((0, 1),))
    upd = XNASUpdate(lr, L)
    arch = ArchParams([group], upd.parameterization).double()
    upd.bind(arch)
    ctx = StepContext(None, arch, None, None, None, [], 0.0, 0, 1, 0, T, None, T, 0)
    return upd, arch, ctx


def test_default_learning_rate_and_threshold_formula():
    upd, arch, ctx = _xnas(T=1000, L=0.5)
    assert upd.eta(ctx) == pytest.approx(math.sqrt(2 * math.log(5) / 1000) / 0.5)
    lv = torch.tensor([[0.3]])
    assert wipeout_threshold(lv, 0.01, 0.5, 100, 40).item() == pytest.approx(0.3 - 2 * 0.01 * 0.5 * 60)


def test_wipeout_removes_exactly_the_experts_below_the_threshold():
    upd, arch, ctx = _xnas(T=10, L=1.0, lr=0.5)
    with torch.no_grad():
        arch.theta["cell"].copy_(torch.tensor([[0.0, -8.9, -9.1, -2.0, -9.5]]))
    ctx.arch_step_index = 0  # t = 1: threshold log v_max - 2 * 0.5 * 1 * 9 = -9 (after update)
    upd.step({"cell": torch.zeros(1, 5, dtype=torch.float64)}, ctx)
    assert arch.alive("cell").tolist() == [[True, True, False, True, False]]


def test_wipeout_never_removes_the_final_leader_when_rewards_are_bounded():
    L, T, n = 1.0, 400, 8
    for seed in range(30):
        gen = torch.Generator().manual_seed(seed)
        upd, arch, ctx = _xnas(T=T, L=L, lr=0.05, n_ops=n)
        bias = torch.randn(n, generator=gen, dtype=torch.float64) * 0.3
        cumulative = torch.zeros(n, dtype=torch.float64)
        for t in range(T):
            reward = (bias + torch.randn(n, generator=gen, dtype=torch.float64)).clamp(-L, L)
            cumulative += reward
            ctx.arch_step_index = t
            upd.step({"cell": -reward.view(1, n)}, ctx)  # gradients are minus the rewards
        leader = int(cumulative.argmax())
        assert arch.alive("cell")[0, leader], f"seed {seed}: the leader was wiped out"


def test_wiped_ops_are_never_revived_nor_computed():
    torch.manual_seed(0)
    sp = get_space("nb201", C=4, N=1, fused=False)  # per-op modules, to watch each op
    model = sp.supernet()
    st = make_strategy("xnas", arch_lr=5.0)  # a large step wipes quickly
    st.setup(sp.choices(), model, seed=0)
    g = torch.Generator().manual_seed(0)
    calls = []
    for cell in (m for m in model.modules() if type(m).__name__ == "SearchCell"):
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                op.register_forward_hook(lambda *_, e=e, k=k: calls.append((e, k)))
    weight_step = st.weight_step

    def recorded_weight_step(ctx):  # the weight step runs after the architecture update
        calls.clear()
        return weight_step(ctx)

    st.weight_step = recorded_weight_step
    dead_before = torch.zeros(6, 5, dtype=torch.bool)
    for step in range(6):
        tb, vb = sp.example_batch(8, g), sp.example_batch(8, g)
        st.step(tb, vb, loss_fn=sp.loss, epoch=0, epochs=1, step=step, steps_per_epoch=6)
        dead = ~st.arch.alive("cell")
        assert (dead >= dead_before).all()  # monotone: never revived
        assert calls and not any(dead[e, k] for e, k in calls)
        assert (st.arch.probs_detached()["cell"][dead] == 0).all()
        dead_before = dead.clone()
    assert dead_before.any(), "nothing was wiped out; the test would prove nothing"


# ---- PC-DARTS -----------------------------------------------------------------------------------
def test_channel_shuffle_interleaves_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op_processes_the_first_quarter_and_keeps_the_rest_in_place(seed, stride):
    """PC-DARTS's official MixedOp: the first C/K channels go through the op, the others
    bypass it (max-pooled on a reducing edge); the shuffle puts every channel at the same place
    at every forward, whatever the random state."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(2, 2, 1, stride=stride, bias=False)
    op = PartialMixedOp(MixedOp([conv]), K=4, stride=stride)
    seen = []
    conv.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    for trial in range(3):
        x = torch.randn(2, 8, 6, 6)
        torch.manual_seed(seed * 100 + trial)  # the random state must not matter
        y = op(x, torch.ones(1), [0])
        assert torch.equal(seen[-1], x[:, :2])  # the first 1/K
        unshuffled = y.view(2, 2, 4, *y.shape[2:]).transpose(1, 2).reshape(2, 8, *y.shape[2:])
        bypass = x[:, 2:] if stride == 1 else torch.nn.functional.max_pool2d(x[:, 2:], 2, 2)
        assert torch.equal(unshuffled[:, 2:], bypass)
        assert torch.equal(unshuffled[:, :2], conv(x[:, :2]))


def test_pcdarts_uses_partial_channels_and_edge_weights():
    res = archgrad.search(strategy="pcdarts", dataset="synthetic", epochs=2, C=8, N=1,
                          device="cpu", warmup_epochs=0)
    assert res.config.space_options["partial_channels"] == 4
    sup = get_space("nb201", C=8, N=1, partial_channels=4).supernet()
    full = get_space("nb201", C=8, N=1, fused=False).supernet()  # per-edge modules

    def conv3x3(model):  # the 3x3 convolution on edge 0 of the first cell
        edge = model.net.cells[0].edges[0]
        return getattr(edge, "mixed", edge).ops[3][1].weight

    assert conv3x3(sup).shape[:2] == (2, 2) and conv3x3(full).shape[:2] == (8, 8)
    st = make_strategy("pcdarts")
    assert st.edge_weights and st.update.lr == 6e-4 and st.warmup(50) == 15


def test_edge_weights_normalise_per_node_and_scale_edge_outputs():
    arch = ArchParams([GROUP], make_strategy("pcdarts").update.parameterization,
                      edge_weights=True)
    with torch.no_grad():
        arch.beta["cell"].copy_(torch.tensor([0.0, 50.0, -50.0, 0.0, 0.0, 0.0]))
    w = arch.edge_weights()["cell"].detach()
    assert w[0] == pytest.approx(1.0)                          # node 1 has one input
    assert w[1] == pytest.approx(1.0) and w[2] < 1e-6          # node 2: edge 2<-0 dominates
    assert w[3:].sum() == pytest.approx(1.0)                   # node 3: three inputs
    # in the supernet node 2 then equals its edge from node 0 alone
    torch.manual_seed(0)
    sp = get_space("nb201", C=4, N=1)
    net = sp.supernet().eval()
    x = torch.randn(2, 3, 8, 8)
    probs = arch.probs_detached()
    y1 = net(x, Mix(probs, arch.dense_active(), {"cell": w.detach()}))
    w2 = w.detach().clone()
    w2[2] = 0.0
    y2 = net(x, Mix(probs, arch.dense_active(), {"cell": w2}))
    assert torch.allclose(y1, y2, atol=1e-5)
