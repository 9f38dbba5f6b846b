"""A faster NAS-Bench-201 search cell that computes the same function as ``SearchCell``.

Work shared by the edges leaving a node is done once for all of them:

* one ReLU of the node's value feeds every ReLU-Conv-BN op on its outgoing edges;
* the 3x3 (and the 1x1) convolutions of all outgoing edges run as one convolution with their
  output channels concatenated, and their batch norms as one batch norm over those channels
  (batch norm is per channel, so this is the same operation);
* the average pooling (and the skip connection) of the node is computed once;
* a convolution's mixing weight is folded into its batch norm's affine map, and every other
  (edge, op) term is added to its target node by one fused multiply-add.

Only what the mix asks for is computed: with a sparse mix only the selected edges' channels are
convolved (their weights and BN statistics selected, the running statistics written back).
``zero`` candidates are never computed. Parameters are held per source node, concatenated over
its outgoing edges; ``from_reference`` converts a ``SearchCell``'s state.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.arch import ChoiceGroup, Mix


class FusedConvBN(nn.Module):
    """``n`` ReLU-Conv-BN ops of C channels on the same (already ReLU'd) input, stacked."""

    def __init__(self, C: int, n: int, k: int, *, affine: bool, track: bool):
        super().__init__()
        self.C, self.n, self.k = C, n, k
        self.affine, self.track = affine, track
        self.weight = nn.Parameter(torch.empty(n * C, C, k, k))
        # as nn.Conv2d initialises each edge's convolution (same fan-in)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if not affine:  # the benchmark's search cells: conv bias = not affine
            self.bias = nn.Parameter(torch.empty(n * C))
            bound = 1 / math.sqrt(C * k * k)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)
            self.bn_weight = nn.Parameter(torch.ones(n * C))
            self.bn_bias = nn.Parameter(torch.zeros(n * C))
        if track:
            self.register_buffer("running_mean", torch.zeros(n * C))
            self.register_buffer("running_var", torch.ones(n * C))
        self.momentum, self.eps = 0.1, 1e-5

    def _rows(self, blocks: list[int], device) -> Tensor:
        C = self.C
        return torch.cat([torch.arange(b * C, (b + 1) * C) for b in blocks]).to(device)

    def forward(self, r: Tensor, blocks: list[int], scale: Tensor | None = None) -> Tensor:
        """Outputs of the ops of edges ``blocks`` (positions among the node's outgoing edges),
        concatenated along the channels in that order, each block multiplied by its entry of
        ``scale`` (the mixing weights) when given.

        The scale rides in the batch norm's affine weight (and bias): BN(y) * s is a per-channel
        affine map of the normalised y, so no separate multiply runs forward, and backward the
        batch norm's own per-channel reduction gives d loss / d s."""
        full = len(blocks) == self.n
        idx = None if full else self._rows(blocks, r.device)
        pick = (lambda t: t) if full else (lambda t: t.index_select(0, idx))
        y = F.conv2d(r, pick(self.weight), None if self.bias is None else pick(self.bias),
                     padding=self.k // 2)
        w = None if self.bias is not None else pick(self.bn_weight)
        b = None if self.bias is not None else pick(self.bn_bias)
        if scale is not None:
            s = scale.to(self.weight.dtype).repeat_interleave(self.C)  # the parameters' dtype
            w, b = (s, None) if w is None else (w * s, b * s)
        if not self.track:
            return F.batch_norm(y, None, None, w, b, True, 0.0, self.eps)
        if not self.training:
            return F.batch_norm(y, pick(self.running_mean), pick(self.running_var), w, b, False,
                                0.0, self.eps)
        if full:
            return F.batch_norm(y, self.running_mean, self.running_var, w, b, True,
                                self.momentum, self.eps)
        rm, rv = self.running_mean[idx], self.running_var[idx]
        out = F.batch_norm(y, rm, rv, w, b, True, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.index_copy_(0, idx, rm)
            self.running_var.index_copy_(0, idx, rv)
        return out


def box_sum3(x: Tensor) -> Tensor:
    """3x3 box sum with zero padding, same size: shifted in-place adds, no padded copy."""
    h = x.clone()
    h[..., :, 1:] += x[..., :, :-1]
    h[..., :, :-1] += x[..., :, 1:]
    v = h.clone()
    v[..., 1:, :] += h[..., :-1, :]
    v[..., :-1, :] += h[..., 1:, :]
    return v


class _AvgPool3x3(torch.autograd.Function):
    # a zero-padded box filter is its own adjoint: the backward is the same box sum of
    # grad / count, so no slice gradients (zero-filled full-size tensors) are built
    @staticmethod
    def forward(ctx, x, inv):
        ctx.save_for_backward(inv)
        return box_sum3(x).mul_(inv)

    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return box_sum3(g * inv), None


class AvgPool3x3(nn.Module):
    """3x3 average pooling, stride 1, padding 1, not counting the padding: a separable 3x3 box
    sum divided by the number of pixels inside the window (9 inside, 6 on edges, 4 in corners).
    The same function as ``nn.AvgPool2d(3, 1, 1, count_include_pad=False)``, several times
    faster on CPU."""

    def __init__(self):
        super().__init__()
        self._inv: dict = {}

    def _inverse_counts(self, x: Tensor) -> Tensor:
        key = (x.shape[-2], x.shape[-1], x.device, x.dtype)
        inv = self._inv.get(key)
        if inv is None:
            ones = torch.ones(1, 1, key[0], key[1], dtype=x.dtype)
            inv = (1.0 / box_sum3(ones)[0, 0]).to(x.device)
            self._inv[key] = inv
        return inv

    def forward(self, x: Tensor) -> Tensor:
        return _AvgPool3x3.apply(x, self._inverse_counts(x))


class FanOut(nn.Module):
    """The parametric ops of all edges leaving one node."""

    def __init__(self, C: int, n: int, ops: tuple[str, ...], *, affine: bool, track: bool):
        super().__init__()
        self.conv3 = FusedConvBN(C, n, 3, affine=affine, track=track) \
            if "nor_conv_3x3" in ops else None
        self.conv1 = FusedConvBN(C, n, 1, affine=affine, track=track) \
            if "nor_conv_1x1" in ops else None


class FusedSearchCell(nn.Module):
    def __init__(self, C: int, group: ChoiceGroup, nodes: int, *, affine: bool, track: bool,
                 aux_skip: bool = False):
        super().__init__()
        self.group, self.C, self.n_nodes = group, C, nodes
        if aux_skip:  # DARTS-'s auxiliary skip per edge, its coefficient set by the schedule
            self.aux_coef = 0.0
        ops = group.ops
        self.k = {name: (ops.index(name) if name in ops else None)
                  for name in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")}
        self.out_edges = [[e for e, (s, _) in enumerate(group.edges) if s == src]
                          for src in range(nodes - 1)]
        self.fanout = nn.ModuleList(FanOut(C, len(E), ops, affine=affine, track=track)
                                    for E in self.out_edges)
        self.pool = AvgPool3x3()

    def forward(self, x: Tensor, mix: Mix) -> Tensor:
        label = self.group.label
        zero = self.group.skip_mask
        w = mix.weights[label]
        scale = mix.edge_scale.get(label)
        if scale is not None:  # edge normalisation folds into the edges' mixing weights
            w = w * scale[:, None]
        ks, k1, k3, kp = (self.k[n] for n in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                               "avg_pool_3x3"))
        nodes: list[Tensor | None] = [x] + [None] * (self.n_nodes - 1)

        def add(dst, t, weight=None):
            if weight is None:  # already weighted
                nodes[dst] = t if nodes[dst] is None else nodes[dst] + t
            else:
                nodes[dst] = t * weight if nodes[dst] is None else \
                    torch.addcmul(nodes[dst], t, weight)

        p_skip = mix.skip_dropout if self.training else 0.0
        for s, E in enumerate(self.out_edges):
            xs = nodes[s] if nodes[s] is not None else torch.zeros_like(x)
            acts = [tuple(mix.edge_active(label, e, zero)) for e in E]
            b3 = [i for i, a in enumerate(acts) if k3 is not None and k3 in a]
            b1 = [i for i, a in enumerate(acts) if k1 is not None and k1 in a]
            fan = self.fanout[s]
            r = torch.relu(xs) if (b3 or b1) else None
            y3 = fan.conv3(r, b3, w[[E[i] for i in b3], k3]) if b3 else None
            y1 = fan.conv1(r, b1, w[[E[i] for i in b1], k1]) if b1 else None
            pooled = self.pool(xs) if any(kp is not None and kp in a for a in acts) else None
            C = self.C
            y3 = y3.split(C, dim=1) if y3 is not None else None  # views; one backward concat
            y1 = y1.split(C, dim=1) if y1 is not None else None
            aux = getattr(self, "aux_coef", 0.0)
            for i, e in enumerate(E):
                dst, a, we = self.group.edges[e][1], acts[i], w[e]
                if aux:
                    add(dst, xs * aux)
                if ks is not None and ks in a:  # P-DARTS: dropout after each skip connection
                    add(dst, F.dropout(xs, p_skip) if p_skip > 0 else xs, we[ks])
                if pooled is not None and kp in a:
                    add(dst, pooled, we[kp])
                if y1 is not None and i in b1:
                    add(dst, y1[b1.index(i)])
                if y3 is not None and i in b3:
                    add(dst, y3[b3.index(i)])
                if mix.inactive_as_constant:
                    rest = [k for k in range(len(zero)) if k not in a]
                    if rest:
                        c = we[rest].sum()
                        nodes[dst] = torch.zeros_like(x) + c if nodes[dst] is None \
                            else nodes[dst] + c
        out = nodes[-1]
        return torch.zeros_like(x) if out is None else out

    @torch.no_grad()
    def load_reference(self, ref) -> None:
        """Copy the weights and statistics of a reference ``SearchCell`` into this cell."""
        ops = self.group.ops
        for s, E in enumerate(self.out_edges):
            fan = self.fanout[s]
            for name, fused in (("nor_conv_3x3", fan.conv3), ("nor_conv_1x1", fan.conv1)):
                if fused is None:
                    continue
                k = ops.index(name)
                for i, e in enumerate(E):
                    relu_conv_bn = ref.edges[e].ops[k]
                    conv, bn = relu_conv_bn[1], relu_conv_bn[2]
                    rows = slice(i * self.C, (i + 1) * self.C)
                    fused.weight[rows] = conv.weight
                    if fused.bias is not None:
                        fused.bias[rows] = conv.bias
                    else:
                        fused.bn_weight[rows] = bn.weight
                        fused.bn_bias[rows] = bn.bias
                    if fused.track:
                        fused.running_mean[rows] = bn.running_mean
                        fused.running_var[rows] = bn.running_var
