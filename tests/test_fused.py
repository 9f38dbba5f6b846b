"""The fused NB201 supernet computes the same outputs and gradients as the straightforward
per-edge, per-op evaluation, for every kind of mix the strategies produce."""
import pytest
import torch

from archgrad.core.arch import Mix
from archgrad.spaces import get_space
from archgrad.spaces.nb201 import SearchCell
from archgrad.spaces.nb201_fused import FusedSearchCell


def _pair(**opts):
    torch.manual_seed(0)
    # the reference: per edge, per op, plain NCHW; the optimised one: the defaults (fused,
    # channels-last)
    ref_space = get_space("nb201", C=4, N=2, fused=False, channels_last=False, **opts)
    ref = ref_space.supernet().double()
    fused = get_space("nb201", C=4, N=2, **opts).supernet().double()
    assert fused.channels_last and not ref.channels_last
    # same weights: everything outside the cells by name, the cells edge by edge
    fused_state = fused.state_dict()
    for k, v in ref.state_dict().items():
        if k in fused_state:
            fused_state[k].copy_(v)
    for rc, fc in zip(ref.net.cells, fused.net.cells):
        if isinstance(rc, SearchCell):
            assert isinstance(fc, FusedSearchCell)
            fc.load_reference(rc)
    return ref_space, ref, fused


def _mixes(group, gen):
    E, K = group.shape
    zero = group.zero_mask
    dense_w = torch.softmax(torch.randn(E, K, generator=gen, dtype=torch.float64), -1)
    onehot_idx = torch.randint(0, K, (E,), generator=gen).tolist()
    onehot_w = torch.nn.functional.one_hot(torch.tensor(onehot_idx), K).double()
    two = [tuple(torch.randperm(K, generator=gen)[:2].tolist()) for _ in range(E)]
    soft = torch.softmax(torch.randn(E, K, generator=gen, dtype=torch.float64), -1)
    st = onehot_w - soft.detach() + soft
    return {
        "dense": Mix(dense_w, {}),
        "onehot": Mix(onehot_w, {"cell": [(k,) for k in onehot_idx]}),
        "two-paths": Mix(onehot_w, {"cell": two}),
        "straight-through": Mix(st, {"cell": [(k,) for k in onehot_idx]},
                                inactive_as_constant=True),
        "edge-scaled": Mix(dense_w, {}, {"cell": torch.rand(E, generator=gen,
                                                            dtype=torch.float64)}),
        "partly-dead": Mix(dense_w, {"cell": [tuple(k for k in range(K) if not zero[k]
                                                    and (k + e) % 3) for e in range(E)]}),
    }


def _leafify(mix):
    w = {k: v.detach().clone().requires_grad_(True) for k, v in
         (mix.weights.items() if isinstance(mix.weights, dict) else [("cell", mix.weights)])}
    return Mix(w, mix.active, mix.edge_scale, mix.inactive_as_constant), w


def _grads_by_edge(model, group):
    """Gradients of every conv (and bias / BN affine) keyed by (cell, edge, op, what)."""
    out, ops = {}, group.ops
    for ci, cell in enumerate(model.net.cells):
        if isinstance(cell, SearchCell):
            for e, mixed in enumerate(cell.edges):
                for k, name in enumerate(ops):
                    if name.startswith("nor_conv"):
                        conv, bn = mixed.ops[k][1], mixed.ops[k][2]
                        out[(ci, e, name, "w")] = conv.weight.grad
                        out[(ci, e, name, "b")] = conv.bias.grad if conv.bias is not None \
                            else bn.weight.grad
        elif isinstance(cell, FusedSearchCell):
            for s, E in enumerate(cell.out_edges):
                for name, fused in (("nor_conv_3x3", cell.fanout[s].conv3),
                                    ("nor_conv_1x1", cell.fanout[s].conv1)):
                    if fused is None:
                        continue
                    for i, e in enumerate(E):
                        rows = slice(i * cell.C, (i + 1) * cell.C)
                        gw = fused.weight.grad
                        gb = fused.bias.grad if fused.bias is not None else fused.bn_weight.grad
                        out[(ci, e, name, "w")] = None if gw is None else gw[rows]
                        out[(ci, e, name, "b")] = None if gb is None else gb[rows]
    return out


def _close(a, b):
    if a is None or b is None:
        return (a is None or not a.abs().any()) and (b is None or not b.abs().any())
    return torch.allclose(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("opts", [{}, {"include_none": False},
                                  {"ops": ["none", "skip_connect", "nor_conv_3x3"]},
                                  {"affine": True}, {"track_running_stats": False}])
def test_fused_supernet_equals_the_reference(opts):
    space, ref, fused = _pair(**opts)
    (group,) = space.choices()
    gen = torch.Generator().manual_seed(1)
    for name, mix in _mixes(group, gen).items():
        for train in (True, False):
            ref.train(train)
            fused.train(train)
            ref.zero_grad()
            fused.zero_grad()
            x = torch.randn(6, 3, 8, 8, generator=gen, dtype=torch.float64)
            xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            mr, wr = _leafify(mix)
            mf, wf = _leafify(mix)
            yr, yf = ref(xr, mr), fused(xf, mf)
            assert torch.allclose(yr, yf, atol=1e-10), (name, train)
            g = torch.randn(yr.shape, generator=gen, dtype=torch.float64)
            (yr * g).sum().backward()
            (yf * g).sum().backward()
            assert torch.allclose(xr.grad, xf.grad, atol=1e-10), (name, train)
            assert _close(wr["cell"].grad, wf["cell"].grad), (name, train)
            gr, gf = _grads_by_edge(ref, group), _grads_by_edge(fused, group)
            assert gr.keys() == gf.keys()
            for k in gr:
                assert _close(gr[k], gf[k]), (name, train, k)
            # everything outside the cells, and the BN statistics, by name where shared
            fr = dict(fused.named_parameters())
            for k, p in ref.named_parameters():
                if k in fr:
                    assert _close(p.grad, fr[k].grad), (name, k)
    # the running statistics after all those training forwards agree too
    for rc, fc in zip(ref.net.cells, fused.net.cells):
        if isinstance(rc, SearchCell) and fc.fanout[0].conv3 is not None \
                and fc.fanout[0].conv3.track:
            bn = rc.edges[0].ops[group.ops.index("nor_conv_3x3")][2]
            assert torch.allclose(bn.running_mean, fc.fanout[0].conv3.running_mean[:fc.C])
            assert torch.allclose(bn.running_var, fc.fanout[0].conv3.running_var[:fc.C])


def test_fused_cell_convolves_only_the_selected_edges():
    space, ref, fused = _pair()
    (group,) = space.choices()
    calls = []
    for cell in fused.net.cells:
        if isinstance(cell, FusedSearchCell):
            for fan in cell.fanout:
                for conv in (fan.conv3, fan.conv1):
                    conv.register_forward_hook(lambda m, i, o: calls.append(o.shape[1]))
    k3 = group.ops.index("nor_conv_3x3")
    skip = group.ops.index("skip_connect")
    idx = [k3, skip, skip, skip, skip, k3]  # 3x3 on edges 1<-0 and 3<-2 only
    fused(torch.randn(2, 3, 8, 8, dtype=torch.float64), space.discrete_mix(
        space.genotype_from_indices({"cell": idx})))
    # per cell: node 0 convolves one edge's channels, node 2 one; nothing else
    # (2 cells per stage at 4, 8, 16 channels)
    assert calls == [4] * 4 + [8] * 4 + [16] * 4
