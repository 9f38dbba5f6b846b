"""The DARTS convolutional cell's networks: the ops by name, the search cell and supernet (every
candidate on every edge, mixed by weights from outside), and the evaluation networks for
CIFAR and ImageNet built from a genotype (auxiliary head, drop-path)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.arch import ChoiceGroup, Mix
from ..core.ops import (
    Conv7x1_1x7,
    DilConv,
    FactorizedReduce,
    MixedOp,
    Noise,
    PartialMixedOp,
    ReLUConvBN,
    SepConv,
    Zero,
    drop_path,
    mixed_node,
)
from ..errors import GenotypeError
from .base import Supernet
from .darts_genotypes import ALL_OPS, DartsGenotype


def make_op(name: str, C: int, stride: int, *, affine: bool = True, track: bool = True,
            search: bool = False) -> nn.Module:
    bn = dict(affine=affine, track_running_stats=track)
    if name == "none":
        op = Zero(C, C, stride)
    elif name == "avg_pool_3x3":
        op = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    elif name == "max_pool_3x3":
        op = nn.MaxPool2d(3, stride=stride, padding=1)
    elif name == "skip_connect":
        op = nn.Identity() if stride == 1 else FactorizedReduce(C, C, **bn)
    elif name in ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"):
        k = int(name[-1])
        op = SepConv(C, C, k, stride, k // 2, **bn)
    elif name == "dil_conv_3x3":
        op = DilConv(C, C, 3, stride, 2, 2, **bn)
    elif name == "dil_conv_5x5":
        op = DilConv(C, C, 5, stride, 4, 2, **bn)
    elif name == "conv_7x1_1x7":
        op = Conv7x1_1x7(C, stride, **bn)
    elif name == "noise":
        op = Noise(stride)
    else:
        raise GenotypeError(f"unknown DARTS op '{name}'; ops are: {', '.join(ALL_OPS)}")
    if search and "pool" in name:  # the official search code: pooling, then a BN without affine
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False, track_running_stats=track))
    return op


def _edges(steps: int) -> tuple[tuple[int, int], ...]:
    return tuple((j, i + 2) for i in range(steps) for j in range(i + 2))


class DartsSearchCell(nn.Module):
    def __init__(self, C_pp, C_p, C, reduction, reduction_prev, group: ChoiceGroup, steps,
                 multiplier, *, track, partial_channels=1, aux_skip=False):
        super().__init__()
        self.reduction, self.group = reduction, group
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0 = FactorizedReduce(C_pp, C, affine=False, track_running_stats=track) \
            if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False,
                                              track_running_stats=track)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False, track_running_stats=track)
        K = partial_channels
        if C % K:
            raise GenotypeError(f"partial_channels={K} must divide the cells' channels ({C})")
        self.partial = K > 1
        ops = nn.ModuleList()
        for e, (j, _) in enumerate(group.edges):
            stride = 2 if reduction and j < 2 else 1
            mixed = MixedOp([make_op(c.name, C // K, stride, affine=False, track=track,
                                     search=True) for c in group.candidates], group.ops)
            ops.append(PartialMixedOp(mixed, K, stride) if self.partial
                       else mixed)
        self.edges = ops
        self.incoming = group.incoming()
        if aux_skip:  # DARTS-: identity, FactorizedReduce on a stride-2 edge (its MixedOp)
            self.aux = nn.ModuleList(
                FactorizedReduce(C, C, affine=False, track_running_stats=track)
                if reduction and j < 2 else nn.Identity() for j, _ in group.edges)
            self.aux_coef = 0.0

    def forward(self, s0: Tensor, s1: Tensor, mix: Mix) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        shape = list(states[1].shape)
        if self.reduction:
            shape[2], shape[3] = (shape[2] + 1) // 2, (shape[3] + 1) // 2
        for i in range(self.steps):
            s = mixed_node(self.edges, self.incoming[i + 2], states, self.group, mix)
            aux = getattr(self, "aux_coef", 0.0)
            if aux:
                for e in self.incoming[i + 2]:
                    t = self.aux[e](states[self.group.edges[e][0]]) * aux
                    s = t if s is None else s + t
            states.append(states[1].new_zeros(shape) if s is None else s)
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSupernet(Supernet):
    def __init__(self, C, layers, steps, multiplier, stem_multiplier, num_classes, in_channels,
                 normal: ChoiceGroup, reduce: ChoiceGroup, *, track=True, partial_channels=1,
                 aux_skip=False):
        super().__init__()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = DartsSearchCell(C_pp, C_p, C_curr, reduction, reduction_prev,
                                   reduce if reduction else normal, steps, multiplier,
                                   track=track, partial_channels=partial_channels,
                                   aux_skip=aux_skip)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: Tensor, mix: Mix) -> Tensor:
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, mix.layer(i))
        return self.classifier(self.global_pooling(s1).flatten(1))


# ----------------------------------------------------------------------------------------------
# Evaluation networks
# ----------------------------------------------------------------------------------------------
class EvalCell(nn.Module):
    def __init__(self, genotype: DartsGenotype, C_pp, C_p, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else \
            ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        cell = "reduce" if reduction else "normal"
        self.node_inputs = genotype.nodes(cell)
        self.concat = getattr(genotype, cell + "_concat")
        self.multiplier = len(self.concat)
        self.ops = nn.ModuleList()
        for inputs in self.node_inputs:
            for name, j in inputs:
                self.ops.append(make_op(name, C, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, drop_prob: float = 0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        shape = list(states[1].shape)
        if self.reduction:
            shape[2], shape[3] = (shape[2] + 1) // 2, (shape[3] + 1) // 2
        k = 0
        for inputs in self.node_inputs:
            s = None
            for _, j in inputs:
                op = self.ops[k]
                k += 1
                h = op(states[j])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                s = h if s is None else s + h
            states.append(states[1].new_zeros(shape) if s is None else s)
        return torch.cat([states[i] for i in self.concat], dim=1)


class _AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier (for an 8x8 input on CIFAR, 14x14 on ImageNet). Inputs
    smaller than the 5x5 pooling window (tiny proxies) are pooled adaptively to 2x2 instead."""

    def __init__(self, C, num_classes, stride, bn_last=True):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if bn_last else []), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        x = torch.relu(x)
        x = self.pool(x) if min(x.shape[-2:]) >= 5 else nn.functional.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


def _stack_cells(genotype: DartsGenotype, layers: int, C_in: int, C: int,
                 reduction_prev: bool) -> tuple[nn.ModuleList, int, int]:
    """DARTS's evaluation stack: ``layers`` cells, reductions (channels doubled) at 1/3 and 2/3
    of the depth. Returns the cells, the last cell's output channels and the channels where
    the auxiliary head attaches (after the second reduction)."""
    cells = nn.ModuleList()
    C_pp, C_p, C_curr, C_aux = C_in, C_in, C, C_in
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            C_curr *= 2
        cell = EvalCell(genotype, C_pp, C_p, C_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        C_pp, C_p = C_p, cell.multiplier * C_curr
        if i == 2 * layers // 3:
            C_aux = C_p
    return cells, C_p, C_aux


class NetworkCIFAR(nn.Module):
    """DARTS's CIFAR evaluation network; ``forward`` returns (logits, auxiliary logits or None)."""

    def __init__(self, genotype: DartsGenotype, C=36, layers=20, num_classes=10, auxiliary=True,
                 in_channels=3, stem_multiplier=3):
        super().__init__()
        self.genotype, self._layers = genotype, layers
        self.drop_path_prob = 0.0
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_curr))
        self.cells, C_p, C_aux = _stack_cells(genotype, layers, C_curr, C, False)
        self.auxiliary = _AuxiliaryHead(C_aux, num_classes, 3) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x):
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3 and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux) if self.training and self.auxiliary is not None else logits


class NetworkImageNet(nn.Module):
    """DARTS's ImageNet (mobile) evaluation network: 224x224 inputs, three stride-2 stems."""

    def __init__(self, genotype: DartsGenotype, C=48, layers=14, num_classes=1000,
                 auxiliary=True, in_channels=3):
        super().__init__()
        self.genotype, self._layers = genotype, layers
        self.drop_path_prob = 0.0
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2), nn.ReLU(inplace=False),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        self.stem1 = nn.Sequential(nn.ReLU(inplace=False),
                                   nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        self.cells, C_p, C_aux = _stack_cells(genotype, layers, C, C, True)
        # the official head omits the last BN ("for consistency with the paper")
        self.auxiliary = _AuxiliaryHead(C_aux, num_classes, 2, bn_last=False) \
            if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)  # AvgPool2d(7) at 224x224
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x):
        aux = None
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == 2 * self._layers // 3 and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux) if self.training and self.auxiliary is not None else logits
