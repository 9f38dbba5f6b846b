"""The DARTS convolutional cell space (Liu, Simonyan & Yang, ICLR 2019), as the official code.

Search: candidates none, max_pool_3x3, avg_pool_3x3, skip_connect (factorized reduce with stride
2), sep_conv_3x3/5x5, dil_conv_3x3/5x5; pooling followed by a BN without affine parameters. A cell
has two input nodes (the previous two cells, pre-processed by ReLU-Conv1x1-BN, or a factorized
reduce after a reduction cell), four intermediate nodes each fed by every earlier node (14 edges)
and outputs the concatenation of the intermediate nodes. Normal and reduction cells have their own
architecture parameters (14 x 8 each); reduction cells sit at 1/3 and 2/3 of the depth. Search
network: C=16, 8 cells, stem multiplier 3.

Derivation (the space's own rules): ``rule="darts"`` keeps for every node the two incoming edges
with the strongest non-``none`` op, each with that op; ``rule="snas"`` is SNAS's child graph, the
argmax of every edge including ``none``, whose ``none`` edges are dropped (nodes may then have any
number of inputs). Edge weights (PC-DARTS) multiply the op probabilities; ``max_skip`` caps the
skip connections of the normal cell (P-DARTS).

Genotypes print and parse in DARTS's format, ``Genotype(normal=[('sep_conv_3x3', 0), ...],
normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])``; a genotype whose nodes do not
all have two inputs adds ``normal_inputs=[...]`` / ``reduce_inputs=[...]``. The published
genotypes DARTS_V1, DARTS_V2 (= DARTS), NASNet and AmoebaNet are built in; more can be registered.

Evaluation networks: CIFAR (C=36, 20 cells, auxiliary head after the second reduction under the
submodule ``auxiliary``, drop-path) and ImageNet mobile (C=48, 14 cells, 224x224 stems).
"""
from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..arch import Candidate, ChoiceGroup, Mix
from ..errors import ArchgradError, GenotypeError, UnknownNameError
from ..ops import (
    Conv7x1_1x7,
    DilConv,
    FactorizedReduce,
    MixedOp,
    Noise,
    PartialMixedOp,
    ReLUConvBN,
    SepConv,
    Zero,
    count_parameters,
    drop_path,
    mixed_node,
)
from .base import Genotype, SearchSpace, Supernet

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
EVAL_ONLY = ("sep_conv_7x7", "conv_7x1_1x7")
#: RobustDARTS's S4 op, outside DARTS's eight
EXTRA_OPS = ("noise",)
ALL_OPS = PRIMITIVES + EVAL_ONLY + EXTRA_OPS
_ROLES = {"none": Candidate("none", zero=True, parametric=False),
          "noise": Candidate("noise", parametric=False),
          "max_pool_3x3": Candidate("max_pool_3x3", parametric=False),
          "avg_pool_3x3": Candidate("avg_pool_3x3", parametric=False),
          "skip_connect": Candidate("skip_connect", parametric=False)}


_SK, _D3, _D5, _S3, _MP, _AP = ("skip_connect", "dil_conv_3x3", "dil_conv_5x5",
                                "sep_conv_3x3", "max_pool_3x3", "avg_pool_3x3")
#: RobustDARTS's reduced spaces (Zela et al. 2020, §3 and Appendix A): S1 gives every edge its
#: own two candidates (the two best of DARTS's eight by the architecture weights of a DARTS
#: search, their spaces.py ``primitives_1``), S2-S4 the same candidates on every edge
ROBUST_SPACES = {
    "s1": {"normal": ((_SK, _D3), (_SK, _D5), (_SK, _D5), (_SK, _S3), (_SK, _D3), (_MP, _SK),
                      (_SK, _S3), (_SK, _S3), (_SK, _D3), (_SK, _S3), (_MP, _SK), (_SK, _D3),
                      (_D3, _D5), (_D3, _D5)),
           "reduce": ((_MP, _AP), (_MP, _D3), (_MP, _AP), (_MP, _AP), (_SK, _D5), (_MP, _AP),
                      (_MP, _S3), (_SK, _D3), (_SK, _D5), (_MP, _AP), (_MP, _AP), (_SK, _D5),
                      (_SK, _D5), (_SK, _D5))},
    "s2": ("skip_connect", "sep_conv_3x3"),
    "s3": ("none", "skip_connect", "sep_conv_3x3"),
    "s4": ("noise", "sep_conv_3x3"),
}


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


# ----------------------------------------------------------------------------------------------
# Genotypes
# ----------------------------------------------------------------------------------------------
class DartsGenotype(Genotype):
    """Normal and reduction cells: (op, input) pairs node by node, and the nodes concatenated."""

    __slots__ = ("normal", "normal_concat", "reduce", "reduce_concat", "normal_inputs",
                 "reduce_inputs")

    def __init__(self, normal, normal_concat, reduce, reduce_concat, normal_inputs=None,
                 reduce_inputs=None):
        vals = {}
        for cell, ops, concat, inputs in (("normal", normal, normal_concat, normal_inputs),
                                          ("reduce", reduce, reduce_concat, reduce_inputs)):
            checked = []
            for i, entry in enumerate(ops):
                if not (isinstance(entry, (tuple, list)) and len(entry) == 2
                        and isinstance(entry[0], str) and isinstance(entry[1], int)
                        and not isinstance(entry[1], bool)):
                    raise GenotypeError(f"{cell} entry {i} is {entry!r}; each entry is an "
                                        f"(op name, input index) pair such as "
                                        f"('sep_conv_3x3', 0)")
                checked.append((entry[0], entry[1]))
            ops = tuple(checked)
            if inputs is None:
                if len(ops) % 2:
                    raise GenotypeError(f"{cell}: DARTS genotypes list two inputs per node; got "
                                        f"{len(ops)} entries (give {cell}_inputs for others)")
                inputs = (2,) * (len(ops) // 2)
            inputs = tuple(int(n) for n in inputs)
            if sum(inputs) != len(ops) or any(n < 0 for n in inputs):
                raise GenotypeError(f"{cell}_inputs {list(inputs)} does not add up to the "
                                    f"{len(ops)} entries of {cell}")
            steps = len(inputs)
            k = 0
            for i, n in enumerate(inputs):
                for pos, (o, j) in enumerate(ops[k:k + n]):
                    if o not in ALL_OPS:
                        close = difflib.get_close_matches(o, ALL_OPS, n=1)
                        hint = f" (did you mean '{close[0]}'?)" if close else ""
                        raise GenotypeError(f"unknown DARTS op '{o}' at {cell} entry {k + pos} "
                                            f"(node {i + 2}){hint}; ops are: "
                                            f"{', '.join(ALL_OPS)}")
                    if not 0 <= j < i + 2:
                        raise GenotypeError(f"{cell} entry {k + pos}: node {i + 2} cannot take "
                                            f"input {j} (only 0..{i + 1})")
                k += n
            concat = tuple(int(c) for c in concat)
            if not concat or any(not 0 <= c < steps + 2 for c in concat):
                raise GenotypeError(f"{cell}_concat {list(concat)} must name nodes 0..{steps + 1}")
            vals[cell], vals[cell + "_concat"], vals[cell + "_inputs"] = ops, concat, inputs
        for k, v in vals.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, *_):
        raise AttributeError("genotypes are immutable")

    def nodes(self, cell: str) -> list[list[tuple[str, int]]]:
        ops, out, k = getattr(self, cell), [], 0
        for n in getattr(self, cell + "_inputs"):
            out.append(list(ops[k:k + n]))
            k += n
        return out

    def __str__(self) -> str:
        def fmt(ops):
            return "[" + ", ".join(f"('{o}', {j})" for o, j in ops) + "]"

        s = (f"Genotype(normal={fmt(self.normal)}, normal_concat={list(self.normal_concat)}, "
             f"reduce={fmt(self.reduce)}, reduce_concat={list(self.reduce_concat)}")
        for cell in ("normal", "reduce"):
            inputs = getattr(self, cell + "_inputs")
            if any(n != 2 for n in inputs):
                s += f", {cell}_inputs={list(inputs)}"
        return s + ")"

    # -- parsing -------------------------------------------------------------------------------
    FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

    @classmethod
    def parse(cls, text: str) -> "DartsGenotype":
        s = text.strip()
        if s in NAMED_GENOTYPES:
            return NAMED_GENOTYPES[s]
        form = ("expected DARTS's form Genotype(normal=[('sep_conv_3x3', 0), ...], "
                "normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...]) or a named "
                f"genotype ({', '.join(NAMED_GENOTYPES)})")
        try:
            tree = ast.parse(s, mode="eval").body
        except SyntaxError:
            raise GenotypeError(f"malformed DARTS genotype: {form}") from None
        name = getattr(tree.func, "id", getattr(tree.func, "attr", "")) \
            if isinstance(tree, ast.Call) else ""
        if name != "Genotype":
            raise GenotypeError(f"malformed DARTS genotype: {form}")
        values = dict(zip(cls.FIELDS, tree.args))
        for kw in tree.keywords:
            if kw.arg is None or kw.arg in values:
                raise GenotypeError(f"malformed DARTS genotype (repeated or unnamed field): {form}")
            values[kw.arg] = kw.value
        extra = set(values) - set(cls.FIELDS) - {"normal_inputs", "reduce_inputs"}
        missing = set(cls.FIELDS) - set(values)
        if extra or missing:
            what = f"unknown field {sorted(extra)[0]!r}" if extra else \
                f"missing {sorted(missing)[0]!r}"
            raise GenotypeError(f"malformed DARTS genotype ({what}): {form}")
        fields = {}
        for k, v in values.items():
            try:
                fields[k] = _literal(v)
            except (ValueError, TypeError, SyntaxError):
                raise GenotypeError(f"malformed DARTS genotype: {k} is not a literal list "
                                    f"({ast.unparse(v)[:60]})") from None
        try:
            return cls(**fields)
        except GenotypeError:
            raise
        except (ValueError, TypeError) as e:
            raise GenotypeError(f"malformed DARTS genotype ({e}): {form}") from None


def _literal(node):
    """A literal, or range(a, b[, c]) as DARTS writes concat lists."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "range" \
            and not node.keywords and 1 <= len(node.args) <= 3:
        return list(range(*(ast.literal_eval(a) for a in node.args)))
    return ast.literal_eval(node)


NAMED_GENOTYPES: dict[str, DartsGenotype] = {}


def register_genotype(name: str, genotype: DartsGenotype | str, replace: bool = False) -> None:
    """Make a genotype available by name wherever a DARTS genotype is accepted."""
    if name in NAMED_GENOTYPES and not replace:
        raise ArchgradError(f"a genotype named '{name}' is already registered")
    NAMED_GENOTYPES[name] = genotype if isinstance(genotype, DartsGenotype) \
        else DartsGenotype.parse(genotype)


# the published genotypes, as the DARTS code lists them
register_genotype("NASNet", DartsGenotype(
    normal=[("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1), ("skip_connect", 1)],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
            ("avg_pool_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2),
            ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
    reduce_concat=[4, 5, 6]))
register_genotype("AmoebaNet", DartsGenotype(
    normal=[("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1),
            ("skip_connect", 0), ("avg_pool_3x3", 1)],
    normal_concat=[4, 5, 6],
    reduce=[("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
            ("sep_conv_7x7", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1),
            ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
    reduce_concat=[3, 4, 6]))
register_genotype("DARTS_V1", DartsGenotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5]))
register_genotype("DARTS_V2", DartsGenotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5]))
register_genotype("DARTS", NAMED_GENOTYPES["DARTS_V2"])


# ----------------------------------------------------------------------------------------------
# Search network
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
class DartsSpace(SearchSpace):
    """The DARTS convolutional cell space: normal and reduction cells, 14 edges x 8 ops each."""

    name = "darts"
    tiny = {"C": 4, "layers": 3, "eval_C": 4, "eval_layers": 3}
    #: GDAS on this cell multiplies only the sampled op by its hard weight (AutoDL-Projects'
    #: NASNet search cell ``forward_gdas`` / ``MixedOp.forward_gdas``): no constant terms of the
    #: other candidates, which NAS-Bench-201's cell adds
    strategy_defaults = {"inactive_gradient": False}
    defaults_sources = {"inactive_gradient": "AutoDL-Projects models/cell_searchs/"
                        "search_cells.py NAS201SearchCell vs NASNetSearchCell.forward_gdas: "
                        "the NASNet (DARTS) cell has no constant terms"}
    search_flags = {"channels": "C", "cells": "layers"}
    depth_option, progressive_depths = "layers", (5, 11, 17)  # P-DARTS
    inputs_per_node = 2
    build_flags = {"channels": "eval_C", "cells": "eval_layers"}
    search_only = frozenset({"C", "layers", "steps", "multiplier", "ops", "include_none",
                             "robust_space",
                             "partial_channels", "track_running_stats", "rule", "max_skip",
                             "auxiliary_skip"})
    options = {
        "C": (16, "channels of the search network's first cells"),
        "layers": (8, "cells of the search network"),
        "steps": (4, "intermediate nodes per cell"),
        "multiplier": (4, "nodes concatenated into a cell's output (the last ones)"),
        "stem_multiplier": (3, "stem channels = stem_multiplier * C"),
        "num_classes": (None, "classifier outputs (default: 10; 1000 with network=imagenet)"),
        "in_channels": (3, "input image channels"),
        "ops": (None, "candidate ops (default: DARTS's eight)"),
        "include_none": (True, "keep 'none' among the candidates (--exclude-none removes it)"),
        "partial_channels": (1, "PC-DARTS: mixed ops process 1/K of the channels (1: all)"),
        "auxiliary_skip": (False, "DARTS-: an auxiliary skip connection on every edge, its "
                            "coefficient set by the strategy (aux_skip)"),
        "track_running_stats": (True, "BN running statistics in the search network"),
        "rule": ("darts", "derivation: 'darts' (two strongest inputs per node) or 'snas' "
                          "(SNAS's child graph: argmax per edge, none edges dropped)"),
        "max_skip": (None, "cap on skip connections in the derived normal cell (P-DARTS: 2)"),
        "robust_space": (None, "RobustDARTS's reduced spaces: 's1' (two candidates per edge "
                               "of their own), 's2' (skip, sep_conv_3x3), 's3' (none, skip, "
                               "sep_conv_3x3), 's4' (noise, sep_conv_3x3)"),
        "network": ("cifar", "evaluation network: 'cifar' or 'imagenet'"),
        "eval_C": (None, "channels of the evaluation network (default 36 CIFAR, 48 ImageNet)"),
        "eval_layers": (None, "cells of the evaluation network (default 20 CIFAR, 14 ImageNet)"),
        "auxiliary": (True, "auxiliary head (weight 0.4 in training) after the 2nd reduction"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        c = self.config
        robust = c["robust_space"]
        if robust is not None:
            if robust not in ROBUST_SPACES:
                raise GenotypeError(f"darts option robust_space must be one of "
                                    f"{', '.join(ROBUST_SPACES)}, got {robust!r}")
            if c["ops"] is not None:
                raise GenotypeError("darts: give ops or robust_space, not both")
            if robust == "s1" and c["steps"] != 4:
                raise GenotypeError("darts: robust_space s1 lists the 14 edges of 4 steps; "
                                    f"steps is {c['steps']}")
            table = ROBUST_SPACES[robust]
            wanted = {op for cell in table.values() for e in cell for op in e} \
                if isinstance(table, dict) else set(table)
            ops = tuple(o for o in PRIMITIVES + EXTRA_OPS if o in wanted)
        else:
            ops = PRIMITIVES if c["ops"] is None else tuple(c["ops"])
        bad = [o for o in ops if o not in PRIMITIVES + EXTRA_OPS]
        if bad or not ops:
            raise GenotypeError(f"darts option ops must be among "
                                f"{', '.join(PRIMITIVES + EXTRA_OPS)}; got {list(ops)}")
        if c["rule"] not in ("darts", "snas"):
            raise GenotypeError(f"darts option rule must be 'darts' or 'snas', got {c['rule']!r}")
        if c["network"] not in ("cifar", "imagenet"):
            raise GenotypeError(f"darts option network must be 'cifar' or 'imagenet', got "
                                f"{c['network']!r}")
        if c["num_classes"] is None:
            c["num_classes"] = 1000 if c["network"] == "imagenet" else 10
        for k in ("C", "layers", "steps", "multiplier", "num_classes", "in_channels"):
            if not isinstance(c[k], int) or c[k] < 1:
                raise GenotypeError(f"darts option {k} must be a positive integer, got {c[k]!r}")
        for k in ("layers", "eval_layers"):  # reductions at 1/3 and 2/3 of the depth
            if c[k] is not None and c[k] < 3:
                raise GenotypeError(f"darts option {k} must be at least 3 (cells in all; with "
                                    f"{c[k]} every cell is a reduction cell and there is no "
                                    f"normal cell), got {c[k]}")
        if c["multiplier"] > c["steps"]:
            raise GenotypeError(f"darts option multiplier ({c['multiplier']}) cannot exceed "
                                f"steps ({c['steps']})")
        ops = tuple(o for o in PRIMITIVES + EXTRA_OPS  # S3 keeps its zero op
                    if o in ops and (c["include_none"] or robust or o != "none"))
        if not ops:
            raise GenotypeError("darts: no candidate op left")
        cands = tuple(_ROLES.get(o, Candidate(o)) for o in ops)
        edges = _edges(c["steps"])
        table = ROBUST_SPACES.get(robust) if robust else None
        allowed = {label: tuple(tuple(o in e for o in ops) for e in table[label])
                   for label in ("normal", "reduce")} if isinstance(table, dict) else {}
        self._groups = [ChoiceGroup(label, cands, edges, allowed.get(label))
                        for label in ("normal", "reduce")]

    def choices(self):
        return list(self._groups)

    def supernet(self) -> DartsSupernet:
        c = self.config
        return DartsSupernet(c["C"], c["layers"], c["steps"], c["multiplier"],
                             c["stem_multiplier"], c["num_classes"], c["in_channels"],
                             *self._groups, track=c["track_running_stats"],
                             partial_channels=c["partial_channels"], aux_skip=c["auxiliary_skip"])

    def build(self, genotype) -> nn.Module:
        c = self.config
        g = self.genotype(genotype)
        if c["network"] == "imagenet":
            return NetworkImageNet(g, c["eval_C"] or 48, c["eval_layers"] or 14,
                                   c["num_classes"], c["auxiliary"], c["in_channels"])
        return NetworkCIFAR(g, c["eval_C"] or 36, c["eval_layers"] or 20, c["num_classes"],
                            c["auxiliary"], c["in_channels"], c["stem_multiplier"])

    def network_options(self):
        out = super().network_options()
        imagenet = out["network"] == "imagenet"
        out["eval_C"] = out["eval_C"] or (48 if imagenet else 36)  # as build resolves them
        out["eval_layers"] = out["eval_layers"] or (14 if imagenet else 20)
        return out

    def parse(self, text: str) -> DartsGenotype:
        return DartsGenotype.parse(text)

    def genotype(self, value) -> DartsGenotype:
        if isinstance(value, DartsGenotype):
            return value
        if isinstance(value, str):
            return DartsGenotype.parse(value)
        raise GenotypeError(f"expected a DARTS genotype, its string or a name, got {value!r}")

    # -- derivation ----------------------------------------------------------------------------
    def derive(self, probs: Mapping[str, Tensor], *,
               edge_weights: Mapping[str, Tensor] | None = None,
               rule: str | None = None, exclude_none: bool = False,
               max_skip: int | None = None) -> DartsGenotype:
        rule = rule or self.config["rule"]
        max_skip = self.config["max_skip"] if max_skip is None else max_skip
        cells = {}
        for g in self._groups:
            p = probs[g.label].detach().double().cpu().clone()
            if edge_weights and g.label in edge_weights:
                p = p * edge_weights[g.label].detach().double().cpu()[:, None]
            if rule == "snas" and not exclude_none:
                cells[g.label] = self._child_graph(g, p)
                continue
            cap = max_skip if g.label == "normal" else None
            cells[g.label] = self._top2(g, p, cap)
        concat = list(range(2 + self.config["steps"] - self.config["multiplier"],
                            self.config["steps"] + 2))
        return DartsGenotype(cells["normal"][0], concat, cells["reduce"][0], concat,
                             cells["normal"][1], cells["reduce"][1])

    def _top2(self, g: ChoiceGroup, p: Tensor, max_skip: int | None):
        ops = g.ops
        none = ops.index("none") if "none" in ops else None
        if none is not None:
            p[:, none] = -1.0
        while True:
            gene = []
            for i in range(self.config["steps"]):
                edges = g.incoming()[i + 2]
                # strongest non-none op; ties keep the lower input (the official sort is stable)
                best = sorted(edges, key=lambda e: -float(p[e].max()))[:2]
                for e in best:
                    gene.append((ops[int(p[e].argmax())], g.edges[e][0], e))
            skips = [t for t in gene if t[0] == "skip_connect"]
            if max_skip is None or len(skips) <= max_skip or "skip_connect" not in ops:
                return [(o, j) for o, j, _ in gene], None
            # P-DARTS: drop the weakest skip connection and derive again
            weakest = min(skips, key=lambda t: float(p[t[2], ops.index("skip_connect")]))
            p[weakest[2], ops.index("skip_connect")] = -1.0

    def _child_graph(self, g: ChoiceGroup, p: Tensor):
        ops, gene, counts = g.ops, [], []
        for i in range(self.config["steps"]):
            n = 0
            for e in g.incoming()[i + 2]:
                o = ops[int(p[e].argmax())]
                if o != "none":
                    gene.append((o, g.edges[e][0]))
                    n += 1
            counts.append(n)
        return gene, counts

    def genotype_from_indices(self, indices) -> DartsGenotype:
        cells = {}
        for g in self._groups:
            idx, gene, counts = indices[g.label], [], []
            for i in range(self.config["steps"]):
                n = 0
                for e in g.incoming()[i + 2]:
                    if idx[e] >= 0 and not g.candidates[idx[e]].zero:
                        gene.append((g.ops[idx[e]], g.edges[e][0]))
                        n += 1
                counts.append(n)
            cells[g.label] = (gene, counts)
        concat = list(range(2 + self.config["steps"] - self.config["multiplier"],
                            self.config["steps"] + 2))
        return DartsGenotype(cells["normal"][0], concat, cells["reduce"][0], concat,
                             cells["normal"][1], cells["reduce"][1])

    def indices(self, genotype) -> dict[str, list[int]]:
        g = self.genotype(genotype)
        out = {}
        for grp in self._groups:
            nodes = g.nodes(grp.label)
            if len(nodes) != self.config["steps"]:
                raise GenotypeError(f"this genotype's cells have {len(nodes)} nodes; the search "
                                    f"network's have {self.config['steps']}")
            idx = [-1] * len(grp.edges)
            base = 0
            for i, inputs in enumerate(nodes):
                for o, j in inputs:
                    e = base + j
                    if o not in grp.ops or idx[e] != -1:
                        raise GenotypeError(f"{grp.label} cell: ({o!r}, {j}) of node {i + 2} "
                                            f"cannot be expressed in the search network")
                    idx[e] = grp.ops.index(o)
                base += i + 2
            out[grp.label] = idx
        return out

    # -- costs (SNAS Appendix F) ---------------------------------------------------------------
    def op_costs(self, image_size: int = 32) -> dict[str, Tensor]:
        from ..costs import op_cost
        c = self.config
        out = {g.label: torch.zeros(*g.shape, 3) for g in self._groups}
        C, hw = c["C"], image_size
        for i in range(c["layers"]):
            reduction = i in (c["layers"] // 3, 2 * c["layers"] // 3)
            if reduction:
                C *= 2
            g = self._groups[1] if reduction else self._groups[0]
            for e, (j, _) in enumerate(g.edges):
                stride = 2 if reduction and j < 2 else 1
                for k, name in enumerate(g.ops):
                    op = make_op(name, C, stride, affine=False, search=True)
                    out[g.label][e, k] += torch.tensor(op_cost(op, (C, hw, hw)))
            if reduction:
                hw = (hw + 1) // 2
        return out

    def report(self, model, genotype) -> dict:
        """The derived normal cell's skip connections (P-DARTS §3.3: their number grows as DARTS
        collapses; DARTS+ and P-DARTS cap it at 2) and the evaluation network's parameters
        (counted on the meta device, without the auxiliary head)."""
        g = self.genotype(genotype)
        cache = self.__dict__.setdefault("_eval_params", {})  # the genotype is often unchanged
        if str(g) not in cache:
            with torch.device("meta"):
                cache[str(g)] = count_parameters(self.build(g))
        return {"skip_connects": sum(op == "skip_connect" for op, _ in g.normal),
                "eval_params": cache[str(g)]}

    def train_recipe(self):
        """DARTS's CIFAR evaluation: 600 epochs, batch 96, SGD lr 0.025 cosine to 0, momentum
        0.9, weight decay 3e-4, clip 5, auxiliary weight 0.4, drop-path 0.2, cutout 16. With
        ``network="imagenet"`` DARTS's ImageNet one (§3.3 / cnn/train_imagenet.py): 250 epochs,
        batch 128, lr 0.1 decayed by 0.97 every epoch, momentum 0.9, weight decay 3e-5, clip 5,
        label smoothing 0.1, auxiliary weight 0.4, no drop-path, no cutout."""
        if self.config["network"] == "imagenet":
            return {"epochs": 250, "batch_size": 128, "lr": 0.1, "lr_min": 0.0,
                    "lr_schedule": "exponential", "lr_gamma": 0.97, "momentum": 0.9,
                    "weight_decay": 3e-5, "nesterov": False, "grad_clip": 5.0,
                    "aux_weight": 0.4, "drop_path": 0.0, "cutout": 0, "label_smoothing": 0.1}
        return {"epochs": 600, "batch_size": 96, "lr": 0.025, "lr_min": 0.0, "momentum": 0.9,
                "weight_decay": 3e-4, "nesterov": False, "grad_clip": 5.0, "aux_weight": 0.4,
                "drop_path": 0.2, "cutout": 16}


def named_genotype(name: str) -> DartsGenotype:
    try:
        return NAMED_GENOTYPES[name]
    except KeyError:
        raise UnknownNameError("genotype", name, NAMED_GENOTYPES) from None


__all__ = ["DartsSpace", "DartsGenotype", "NAMED_GENOTYPES", "register_genotype",
           "named_genotype", "PRIMITIVES", "NetworkCIFAR", "NetworkImageNet"]
