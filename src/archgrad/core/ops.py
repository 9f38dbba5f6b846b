"""Building blocks shared by the search spaces, and the generic mixed operation."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn


class Zero(nn.Module):
    """Outputs zeros. Its role (``is_zero``) lets a mixed op skip it entirely."""

    is_zero = True

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__()
        self.C_in, self.C_out, self.stride = C_in, C_out, stride

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.C_out, (h + s - 1) // s, (w + s - 1) // s)


class Noise(nn.Module):
    """RobustDARTS's ``noise`` op (space S4): standard normal noise of the output's shape,
    whatever the input (stride 2 halves the grid), drawn from torch's global generator (the
    run's checkpoint holds its state)."""

    def __init__(self, stride: int = 1, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.stride, self.mean, self.std = stride, mean, std

    def forward(self, x: Tensor) -> Tensor:
        y = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
        return torch.randn_like(y) * self.std + self.mean


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN (NAS-Bench-201's ``nor_conv``; DARTS's preprocessing)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation=1, *, affine=True,
                 track_running_stats=True, bias=False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, bias=bias),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats))


class Pool(nn.Module):
    """3x3 pooling; a ReLU-Conv1x1-BN first when the channel count changes (NAS-Bench-201)."""

    def __init__(self, C_in, C_out, stride, mode="avg", *, affine=True, track_running_stats=True,
                 bias=False):
        super().__init__()
        self.preprocess = None if C_in == C_out else ReLUConvBN(
            C_in, C_out, 1, 1, 0, affine=affine, track_running_stats=track_running_stats,
            bias=bias)
        if mode == "avg":
            self.op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif mode == "max":
            self.op = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"pool mode must be 'avg' or 'max', got {mode!r}")

    def forward(self, x):
        return self.op(x if self.preprocess is None else self.preprocess(x))


class ResNetBasicblock(nn.Module):
    """NAS-Bench-201's residual reduction block between stages (stride 2, channels x2)."""

    def __init__(self, C_in, C_out, stride=2, *, affine=True, track_running_stats=True):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine=affine,
                                 track_running_stats=track_running_stats, bias=not affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=affine,
                                 track_running_stats=track_running_stats, bias=not affine)
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0),
                                            nn.Conv2d(C_in, C_out, 1, 1, 0, bias=False))
        elif C_in != C_out:
            self.downsample = ReLUConvBN(C_in, C_out, 1, 1, 0, affine=affine,
                                         track_running_stats=track_running_stats,
                                         bias=not affine)
        else:
            self.downsample = None

    def forward(self, x):
        y = self.conv_b(self.conv_a(x))
        return y + (x if self.downsample is None else self.downsample(x))


class FactorizedReduce(nn.Module):
    """ReLU, two stride-2 1x1 convs on offset grids, concatenated, BN (DARTS)."""

    def __init__(self, C_in, C_out, *, affine=True, track_running_stats=True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x):
        x = self.relu(x)
        y = x[:, :, 1:, 1:]
        if y.shape[-1] < x.shape[-1] or y.shape[-2] < x.shape[-2]:
            y = nn.functional.pad(y, (0, x.shape[-1] - y.shape[-1], 0, x.shape[-2] - y.shape[-2]))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(y)], dim=1))


class SepConv(nn.Sequential):
    """DARTS's separable convolution: (ReLU, depthwise k x k, pointwise 1x1, BN) twice, the
    first with the stride."""

    def __init__(self, C_in, C_out, k, stride, padding, *, affine=True, track_running_stats=True):
        bn = dict(affine=affine, track_running_stats=track_running_stats)
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, k, stride, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False), nn.BatchNorm2d(C_in, **bn),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, k, 1, padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out, **bn))


class DilConv(nn.Sequential):
    """DARTS's dilated separable convolution: ReLU, dilated depthwise k x k, pointwise 1x1, BN."""

    def __init__(self, C_in, C_out, k, stride, padding, dilation, *, affine=True,
                 track_running_stats=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, k, stride, padding, dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats))


class Conv7x1_1x7(nn.Sequential):
    """NASNet / AmoebaNet's factorised 7x7 convolution (ReLU, 1x7, 7x1, BN)."""

    def __init__(self, C, stride, *, affine=True, track_running_stats=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats))


def drop_path(x: Tensor, p: float) -> Tensor:
    """Drop the whole path for a random subset of the batch, scaling the rest by 1/(1-p)."""
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


def is_identity(op: nn.Module) -> bool:
    """Whether ``op`` passes its input through unchanged (a stride-1 skip connection)."""
    return isinstance(op, nn.Identity)


class MixedOp(nn.Module):
    """``sum_k w[k] * op_k(x)`` over the candidates listed in ``active`` (DARTS's mixed op with
    its weights passed in from outside). Zero-valued candidates are never computed; when nothing
    is computed the result is ``None``, which the caller treats as a zero contribution.

    ``inactive_as_constant``: every candidate outside ``active`` adds its weight as a constant
    (GDAS's straight-through term); the constant has the shape of the op's *output*, which a
    stride-2 edge halves. ``skip_dropout``: dropout on identity candidates while training."""

    def __init__(self, ops: Sequence[nn.Module], names: Sequence[str] | None = None):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.names = tuple(names) if names is not None else tuple(str(i) for i in range(len(ops)))
        self.zero = tuple(bool(getattr(op, "is_zero", False)) for op in ops)
        self.identity = tuple(is_identity(op) for op in ops)

    def output_zeros(self, x: Tensor) -> Tensor:
        """Zeros of this op's output shape (a zero candidate knows it; else the input's)."""
        for k, z in enumerate(self.zero):
            if z:
                return self.ops[k](x)
        return torch.zeros_like(x)

    def forward(self, x: Tensor, w: Tensor, active: Iterable[int],
                inactive_as_constant: bool = False, skip_dropout: float = 0.0) -> Tensor | None:
        out = None
        active = tuple(active)
        for k in active:
            if self.zero[k]:
                continue
            y = self.ops[k](x)
            if skip_dropout > 0 and self.training and self.identity[k]:
                y = nn.functional.dropout(y, skip_dropout)
            y = y * w[k]
            out = y if out is None else out + y
        if inactive_as_constant:
            rest = [k for k in range(len(self.ops)) if k not in active]
            if rest:
                c = w[list(rest)].sum()
                out = (self.output_zeros(x) + c) if out is None else out + c
        return out


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: interleave ``groups`` groups of channels."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PartialMixedOp(nn.Module):
    """PC-DARTS's partial channel connection (Xu et al. 2020, §3.1, as the official
    ``model_search.py``): the first 1/K of the input channels go through the mixed op built for
    C/K channels, the other (K-1)/K bypass it (max-pooled when the op reduces), the two parts are
    concatenated and channel-shuffled in K groups. Which channels are processed is fixed, so
    every output channel always carries the same input channel or op output from step to
    step; the shuffle changes which channels the next edge processes."""

    def __init__(self, mixed: MixedOp, K: int, stride: int = 1):
        super().__init__()
        self.mixed, self.K = mixed, K
        self.bypass = nn.MaxPool2d(2, 2) if stride == 2 else None

    @property
    def zero(self):
        return self.mixed.zero

    def forward(self, x, w, active, inactive_as_constant=False, skip_dropout=0.0):
        c = x.shape[1] // self.K
        xs, xr = x[:, :c], x[:, c:]
        y = self.mixed(xs, w, active, inactive_as_constant, skip_dropout)
        if self.bypass is not None:
            xr = self.bypass(xr)
        if y is None:
            y = xr.new_zeros(xr.shape[0], c, *xr.shape[2:])
        return channel_shuffle(torch.cat([y, xr], dim=1), self.K)


def mixed_node(edges: Sequence[nn.Module], incoming: Iterable[int], states: Sequence[Tensor],
               group, mix) -> Tensor | None:
    """One node of a search cell: the sum over its ``incoming`` edges of each edge's mixed op
    (``edges[e]``, a ``MixedOp`` or ``PartialMixedOp``) on the edge's source state, each times its
    edge weight where the mix carries them (PC-DARTS's edge normalisation). ``None`` when no
    incoming edge computes anything."""
    label, zero = group.label, group.skip_mask
    w, scale = mix.weights[label], mix.edge_scale.get(label)
    s = None
    for e in incoming:
        y = edges[e](states[group.edges[e][0]], w[e], mix.edge_active(label, e, zero),
                     mix.inactive_as_constant, mix.skip_dropout)
        if y is None:
            continue
        if scale is not None:
            y = y * scale[e]
        s = y if s is None else s + y
    return s


def count_parameters(module: nn.Module, exclude_prefix: str | None = "auxiliary") -> int:
    """Number of trainable parameters, excluding submodules named ``exclude_prefix``."""
    return sum(p.numel() for n, p in module.named_parameters()
               if not (exclude_prefix and (n.startswith(exclude_prefix + ".")
                                           or f".{exclude_prefix}." in n)))
