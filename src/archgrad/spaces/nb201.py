"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), as the benchmark's code builds it.

Cell: 4 nodes, 6 edges (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), node i = sum of its incoming edges,
output = node 3. Candidates: none, skip_connect, nor_conv_1x1, nor_conv_3x3 (ReLU-Conv-BN),
avg_pool_3x3. Network: 3x3 conv stem + BN; three stages of N cells at C, 2C, 4C channels joined by
residual reduction blocks; BN-ReLU, global average pooling, linear classifier. One 6x5 table of
architecture parameters is shared by every cell.

Search settings of the benchmark's code: inside cells BN has no affine parameters (and then the
convolutions carry a bias), running statistics are tracked; the residual blocks, the stem and the
head are ordinary (affine BN). The stand-alone network uses affine BN and bias-free convolutions.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..core.arch import Candidate, ChoiceGroup, Mix
from ..core.ops import MixedOp, PartialMixedOp, Pool, ReLUConvBN, ResNetBasicblock, Zero, mixed_node
from ..errors import GenotypeError
from .base import Genotype, SearchSpace, Supernet
from .nb201_fused import FusedSearchCell

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
EDGES = tuple((j, i) for i in range(1, NODES) for j in range(i))  # (src, dst), benchmark order
LABEL = "cell"

_CANDIDATES = {
    "none": Candidate("none", zero=True, parametric=False),
    "skip_connect": Candidate("skip_connect", parametric=False),
    "nor_conv_1x1": Candidate("nor_conv_1x1"),
    "nor_conv_3x3": Candidate("nor_conv_3x3"),
    "avg_pool_3x3": Candidate("avg_pool_3x3", parametric=False),
}


class NB201Genotype(Genotype):
    """Six op names in edge order; canonical string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""

    __slots__ = ("ops",)

    def __init__(self, ops: Sequence[str]):
        ops = tuple(ops)
        if len(ops) != len(EDGES):
            raise GenotypeError(f"a NAS-Bench-201 cell has {len(EDGES)} edges, got {len(ops)} ops")
        bad = [o for o in ops if o not in OPS]
        if bad:
            raise GenotypeError(f"unknown NAS-Bench-201 op '{bad[0]}'; ops are: {', '.join(OPS)}")
        object.__setattr__(self, "ops", ops)

    def __setattr__(self, *_):
        raise AttributeError("genotypes are immutable")

    def __str__(self) -> str:
        nodes, e = [], 0
        for i in range(1, NODES):
            nodes.append("|" + "|".join(f"{self.ops[e + j]}~{j}" for j in range(i)) + "|")
            e += i
        return "+".join(nodes)

    @classmethod
    def parse(cls, text: str) -> "NB201Genotype":
        s = text.strip()
        example = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+"
                   "|none~0|nor_conv_1x1~1|avg_pool_3x3~2|")
        form = f"expected the NAS-Bench-201 form {example}"
        nodes = s.split("+")
        if len(nodes) != NODES - 1:
            raise GenotypeError(f"malformed NAS-Bench-201 genotype {text!r}: {form}")
        ops = []
        for i, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")):
                raise GenotypeError(f"malformed NAS-Bench-201 genotype {text!r}: {form}")
            items = node[1:-1].split("|")
            if len(items) != i:
                raise GenotypeError(
                    f"malformed NAS-Bench-201 genotype {text!r}: node {i} needs {i} inputs, "
                    f"got {len(items)}; {form}")
            for j, item in enumerate(items):
                m = re.fullmatch(r"([a-z0-9_]+)~(\d+)", item)
                if not m or int(m.group(2)) != j:
                    raise GenotypeError(
                        f"malformed NAS-Bench-201 genotype {text!r}: entry {item!r} of node {i} "
                        f"should be 'op~{j}'; {form}")
                ops.append(m.group(1))
        return cls(ops)

    @classmethod
    def all(cls):
        """All 5^6 = 15625 architectures."""
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield cls(ops)


# --------------------------------------------------------------------------------------------
def _make_op(name: str, C: int, *, affine: bool, track: bool) -> nn.Module:
    # conv bias = not affine, as the benchmark's ReLUConvBN
    if name == "none":
        return Zero(C, C, 1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(C, C, 1, 1, 0, affine=affine, track_running_stats=track, bias=not affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(C, C, 3, 1, 1, affine=affine, track_running_stats=track, bias=not affine)
    if name == "avg_pool_3x3":
        return Pool(C, C, 1, "avg", affine=affine, track_running_stats=track, bias=not affine)
    raise ValueError(name)


class _Skeleton(nn.Module):
    """Stem, stages of cells with residual reductions between them, head."""

    def __init__(self, C: int, N: int, num_classes: int, in_channels: int, make_cell):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        chans = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        cells, C_prev = [], C
        for c, red in zip(chans, reductions):
            cells.append(ResNetBasicblock(C_prev, c, 2) if red else make_cell(c))
            C_prev = c
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def head(self, h: Tensor) -> Tensor:
        return self.classifier(self.global_pooling(self.lastact(h)).flatten(1))


class SearchCell(nn.Module):
    """A cell of mixed ops; the reference evaluation (per edge, per candidate)."""

    def __init__(self, C: int, group: ChoiceGroup, *, affine: bool, track: bool,
                 partial_channels: int = 1, aux_skip: bool = False):
        super().__init__()
        self.group = group
        if aux_skip:  # DARTS-'s auxiliary skip per edge, its coefficient set by the schedule
            self.aux_coef = 0.0
        self.incoming = group.incoming()
        K = partial_channels
        if C % K:
            raise GenotypeError(f"partial_channels={K} must divide every stage's channels; "
                                f"{C} is not divisible")

        def mixed(e):
            m = MixedOp([_make_op(c.name, C // K, affine=affine, track=track)
                         for c in group.candidates], group.ops)
            return m if K == 1 else PartialMixedOp(m, K)

        self.edges = nn.ModuleList(mixed(e) for e in range(len(group.edges)))
        self.partial = K > 1

    def forward(self, x: Tensor, mix: Mix) -> Tensor:
        nodes = [x]
        for i in range(1, NODES):
            s = mixed_node(self.edges, self.incoming[i], nodes, self.group, mix)
            aux = getattr(self, "aux_coef", 0.0)
            if aux:  # every edge is stride 1: the auxiliary skip is the identity
                for e in self.incoming[i]:
                    t = nodes[self.group.edges[e][0]] * aux
                    s = t if s is None else s + t
            nodes.append(torch.zeros_like(x) if s is None else s)
        return nodes[-1]


class NB201Supernet(Supernet):
    def __init__(self, C, N, num_classes, in_channels, group: ChoiceGroup, *, affine=False,
                 track_running_stats=True, partial_channels=1, fused=True, channels_last=True,
                 aux_skip=False):
        super().__init__()
        self.channels_last = channels_last

        def make_cell(c):
            if fused and partial_channels == 1:
                return FusedSearchCell(c, group, NODES, affine=affine, track=track_running_stats,
                                       aux_skip=aux_skip)
            return SearchCell(c, group, affine=affine, track=track_running_stats,
                              partial_channels=partial_channels, aux_skip=aux_skip)

        self.net = _Skeleton(C, N, num_classes, in_channels, make_cell)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, mix: Mix) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.net.stem(x)
        for i, cell in enumerate(self.net.cells):
            h = cell(h, mix.layer(i)) if isinstance(cell, (SearchCell, FusedSearchCell)) \
                else cell(h)
        return self.net.head(h)


class InferCell(nn.Module):
    def __init__(self, C: int, genotype: NB201Genotype):
        super().__init__()
        self.genotype = genotype
        self.layers = nn.ModuleList(_make_op(o, C, affine=True, track=True) for o in genotype.ops)

    def forward(self, x):
        nodes, e = [x], 0
        for i in range(1, NODES):
            s = 0
            for j in range(i):
                s = s + self.layers[e](nodes[j])
                e += 1
            nodes.append(s)
        return nodes[-1]


class NB201Network(nn.Module):
    """The stand-alone network of one genotype, as NAS-Bench-201 trains it."""

    def __init__(self, genotype: NB201Genotype, C=16, N=5, num_classes=10, in_channels=3):
        super().__init__()
        self.genotype = genotype
        self.net = _Skeleton(C, N, num_classes, in_channels, lambda c: InferCell(c, genotype))

    def forward(self, x):
        h = self.net.stem(x)
        for cell in self.net.cells:
            h = cell(h)
        return self.net.head(h)


# --------------------------------------------------------------------------------------------
class NB201Space(SearchSpace):
    """NAS-Bench-201: a 4-node cell with 6 edges and 5 candidate ops, shared by all cells."""

    name = "nb201"
    tiny = {"C": 4, "N": 1}
    depth_option, progressive_depths = "N", (1, 3, 5)  # 3, 9, 15 cells
    search_only = frozenset({"include_none", "ops", "affine", "track_running_stats",
                             "partial_channels", "fused", "channels_last", "auxiliary_skip"})
    options = {
        "C": (16, "channels of the first stage"),
        "N": (5, "cells per stage"),
        "num_classes": (10, "classifier outputs"),
        "in_channels": (3, "input image channels"),
        "include_none": (True, "keep 'none' among the candidates (AdvantageNAS removes it)"),
        "ops": (None, "candidate ops, a subset of the five (default: all); e.g. the benchmark "
                      "code's CONNECT-NAS subset none, skip_connect, nor_conv_3x3"),
        "affine": (False, "affine BN inside search cells (the benchmark's search code: False)"),
        "track_running_stats": (True, "BN running statistics inside search cells"),
        "partial_channels": (1, "PC-DARTS: mixed ops process 1/K of the channels (1: all)"),
        "fused": (True, "compute the work shared by a node's outgoing edges once (same results "
                        "as the per-edge, per-op reference implementation, faster)"),
        "auxiliary_skip": (False, "DARTS-: an auxiliary skip connection on every edge, its "
                            "coefficient set by the strategy (aux_skip)"),
        "channels_last": (None, "NHWC memory layout for the search network; default: on with "
                                "the fused cell (faster convolutions), off for the reference and "
                                "partial-channel cells (slower there)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        c = self.config
        for k in ("C", "N", "num_classes", "in_channels"):
            if not isinstance(c[k], int) or c[k] < 1:
                raise GenotypeError(f"nb201 option {k} must be a positive integer, got {c[k]!r}")
        ops = OPS if c["ops"] is None else tuple(c["ops"])
        bad = [o for o in ops if o not in OPS]
        if bad or len(set(ops)) != len(ops) or not ops:
            raise GenotypeError(f"nb201 option ops must be distinct names among "
                                f"{', '.join(OPS)}; got {list(ops)}")
        ops = tuple(o for o in OPS if o in ops and (c["include_none"] or o != "none"))
        if not ops:
            raise GenotypeError("nb201: no candidate op left")
        self._group = ChoiceGroup(LABEL, tuple(_CANDIDATES[o] for o in ops), EDGES)

    def choices(self):
        return [self._group]

    def supernet(self) -> NB201Supernet:
        c = self.config
        return NB201Supernet(c["C"], c["N"], c["num_classes"], c["in_channels"], self._group,
                             affine=c["affine"], track_running_stats=c["track_running_stats"],
                             partial_channels=c["partial_channels"], fused=c["fused"],
                             aux_skip=c["auxiliary_skip"],
                             channels_last=c["channels_last"] if c["channels_last"] is not None
                             else (c["fused"] and c["partial_channels"] == 1))

    def build(self, genotype) -> NB201Network:
        c = self.config
        return NB201Network(self.genotype(genotype), c["C"], c["N"], c["num_classes"],
                            c["in_channels"])

    def parse(self, text: str) -> NB201Genotype:
        return NB201Genotype.parse(text)

    def genotype(self, value) -> NB201Genotype:
        if isinstance(value, NB201Genotype):
            return value
        if isinstance(value, str):
            return NB201Genotype.parse(value)
        raise GenotypeError(f"expected a NAS-Bench-201 genotype or its string, got {value!r}")

    def derive(self, probs: Mapping[str, Tensor], *, exclude_none: bool = False,
               edge_weights=None, max_skip: int | None = None) -> NB201Genotype:
        """Per-edge argmax of the probabilities (optionally never choosing ``none``; at most
        ``max_skip`` skip connections, the weakest replaced by their edge's next best op, as
        P-DARTS caps them). Every edge keeps an op, so edge weights (PC-DARTS) do not change the
        result."""
        p = probs[LABEL].detach().clone().double()
        ops = self._group.ops
        if exclude_none and "none" in ops:
            p[:, ops.index("none")] = -1.0
        while True:
            choice = p.argmax(-1).tolist()
            skips = [e for e, k in enumerate(choice) if ops[k] == "skip_connect"]
            if max_skip is None or len(skips) <= max_skip:
                return NB201Genotype([ops[k] for k in choice])
            k = ops.index("skip_connect")
            weakest = min(skips, key=lambda e: float(p[e, k]))
            p[weakest, k] = -1.0

    def genotype_from_indices(self, indices) -> NB201Genotype:
        ops = self._group.ops
        return NB201Genotype([ops[k] for k in indices[LABEL]])

    def indices(self, genotype) -> dict[str, list[int]]:
        g, ops = self.genotype(genotype), self._group.ops
        return {LABEL: [ops.index(o) if o in ops else -1 for o in g.ops]}

    def train_recipe(self):
        """NAS-Bench-201's training recipe: SGD with Nesterov momentum 0.9, lr 0.1 cosine-annealed
        to 0, weight decay 5e-4, batch 256, 200 epochs."""
        return {"epochs": 200, "batch_size": 256, "lr": 0.1, "lr_min": 0.0, "momentum": 0.9,
                "weight_decay": 5e-4, "nesterov": True, "grad_clip": None}

    def op_costs(self, image_size: int = 32) -> dict[str, Tensor]:
        """Per candidate: parameters, FLOPs, MAC (SNAS Appendix F) summed over the 3N cells that
        share the architecture (N cells at C, 2C, 4C channels on image_size / 1, 2, 4)."""
        from ..core.costs import op_cost
        c = self.config
        out = torch.zeros(len(EDGES), len(self._group.candidates), 3)
        for stage in range(3):
            C, hw = c["C"] * 2 ** stage, max(image_size // 2 ** stage, 1)
            for k, cand in enumerate(self._group.candidates):
                op = _make_op(cand.name, C, affine=c["affine"], track=c["track_running_stats"])
                out[:, k] += torch.tensor(op_cost(op, (C, hw, hw))) * c["N"]
        return {LABEL: out}

    def report(self, model, genotype) -> dict:
        """The derived cell's skip connections (their number grows as DARTS collapses)."""
        return {"skip_connects": self.genotype(genotype).ops.count("skip_connect")}

    def benchmark(self):
        from ..benchmarks.nb201 import NB201Benchmark
        return NB201Benchmark.load()
