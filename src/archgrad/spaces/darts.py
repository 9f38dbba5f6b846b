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

The candidates and genotypes are in ``darts_genotypes``, the networks in ``darts_nets``; this
module is the space that ties them together.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..core.arch import Candidate, ChoiceGroup
from ..core.ops import count_parameters
from ..errors import GenotypeError, UnknownNameError
from .base import SearchSpace
from .darts_genotypes import (
    _ROLES,
    EXTRA_OPS,
    NAMED_GENOTYPES,
    PRIMITIVES,
    ROBUST_SPACES,
    DartsGenotype,
    register_genotype,
)
from .darts_nets import DartsSupernet, NetworkCIFAR, NetworkImageNet, _edges, make_op


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
        from ..core.costs import op_cost
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
