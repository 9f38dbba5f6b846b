"""Recurrent cells for word-level language modelling on Penn Treebank.

``darts-rnn`` — DARTS's recurrent cell (Liu et al. 2019, §2.1 and §3.1.2; quark0/darts rnn/):
s0 from the input and the previous hidden state through one linear map W0 with the highway gate,
c0 = sigmoid(.), h0 = tanh(.), s0 = h + c0 (h0 - h); node i from a predecessor s_j through its
own map W_i: (c, h) = s_j W_i, c = sigmoid(c), s_i = s_j + c (f(h) - s_j) with f one of tanh,
relu, sigmoid, identity (or none); the output is the mean of nodes 1..8. In the search network
one W_i per node is shared by its incoming edges, every node is the sum over its predecessors
and candidates weighted by the mixing weights (36 edges x 5 candidates), and the states pass a
batch norm without affine parameters. Derivation: per node the predecessor with the strongest
non-``none`` candidate, with that candidate. Search network 300/300 units, evaluation network
850/850; embedding and decoder weights tied; variational (locked) dropout on the embedding
(0.2), the cell's input (0.75) and hidden state (0.25) and the output (0.75), embedding dropout
(0 in search, 0.1 in evaluation); uniform +-0.04 initialisation, decoder bias 0.

``advantagenas-rnn`` — AdvantageNAS's recurrent cell (Sato et al. 2021, §5.3; official ptb/
cell.py, default.py): 3 intermediate nodes, each fed by every earlier node (6 edges), each edge
with its own pair of linear maps (lh, lc); candidates identity, tanh, sigmoid, relu and zero
(h = 0 inside the highway: the edge still passes n_j (1 - c)); node i = (1/i) sum_j [n_j +
sigmoid(lc n_j) (op(lh n_j) - n_j)]; s0 from four separate maps of h and x; output = mean of
nodes 1..3; no batch norm; embedding 300, dropout 0.5 before and after the cell, no weight
tying, uniform +-0.1 initialisation of every parameter. Its own space, not an option of
``darts-rnn``: the cell differs in its maps (per edge, not per node), aggregation (mean over all
inputs, not one input), candidate set and network around it; only the language-modelling task is
shared.

Both spaces' ``forward(window, mix)`` reads the recurrent state the window carries in and
records the state out (``archgrad.data.text.Window``); the output carries the log-probabilities
and the cell's per-step hidden states (for DARTS's temporal activation regularisation).

The candidates and genotypes are in ``rnn_genotypes``, the networks in ``rnn_nets``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.arch import Candidate, ChoiceGroup
from ..errors import GenotypeError, UnknownNameError
from .base import SearchSpace
from .rnn_genotypes import ADV_OPS, DARTS_OPS, RNN_GENOTYPES, EdgeGenotype, RNNGenotype
from .rnn_nets import AdvantageRNNCell, DartsRNNCell


class _LMSpace(SearchSpace):
    modality = "sequence"
    default_batch_size = 256
    search_batch_size = 256

    def loss(self, output, target):
        return F.nll_loss(output.log_probs.reshape(-1, output.log_probs.size(-1)), target)

    def example_batch(self, batch_size=4, generator=None, size=None):
        from ..data.text import StateBox, Window
        g = generator or torch.Generator().manual_seed(0)
        T = size or 5
        v = self.config["vocab_size"]
        toks = torch.randint(0, v, (T + 1, batch_size), generator=g)
        return Window(toks[:-1], None, StateBox()), toks[1:].reshape(-1)

    def meta_input(self, batch: int, data=None):
        from ..data.text import StateBox, Window
        return Window(torch.empty(35, batch, dtype=torch.long, device="meta"), None, StateBox())

    def benchmark(self):
        return None


class DartsRNNSpace(_LMSpace):
    """DARTS's recurrent cell on Penn Treebank: 8 nodes, each taking one earlier node through
    tanh, relu, sigmoid or identity (36 edges x 5 candidates in the search network)."""

    name = "darts-rnn"
    inputs_per_node = 1
    tiny = {"ninp": 8, "nhid": 8, "vocab_size": 50, "steps": 3, "eval_ninp": 8,
            "eval_nhid": 8}
    search_epochs = 50
    #: DARTS's recurrent search (rnn/train_search.py): the weights by SGD lr 20 (constant,
    #: scaled per window by its length), weight decay 5e-7, clip 0.25, for every strategy;
    #: second order: the virtual step's gradient and v clipped to that 0.25 and the implicit
    #: term scaled by the clip coefficient (rnn/architect.py)
    strategy_defaults = {"lr": 20.0, "lr_min": 20.0, "momentum": 0.0, "weight_decay": 5e-7,
                         "grad_clip": 0.25, "unroll_clip": True}
    #: and the architecture by Adam lr 3e-3, betas (0.9, 0.999), weight decay 1e-3
    #: (rnn/architect.py) for the strategies that step with Adam
    arch_defaults = {"arch_lr": 3e-3, "arch_betas": (0.9, 0.999), "arch_weight_decay": 1e-3}
    defaults_sources = {
        "lr": "rnn/train_search.py (--lr 20, constant; scaled by seq_len / bptt)",
        "lr_min": "rnn/train_search.py (no schedule)", "momentum": "rnn/train_search.py (SGD)",
        "weight_decay": "rnn/train_search.py (--wdecay 5e-7)",
        "grad_clip": "rnn/train_search.py (--clip 0.25)",
        "unroll_clip": "rnn/architect.py _compute_unrolled_model / _backward_step_unrolled",
        "arch": "rnn/architect.py (Adam lr 3e-3, weight decay 1e-3, betas (0.9, 0.999))"}
    #: the embedding and hidden sizes are tied (weight tying needs them equal)
    search_flags = {"channels": ("ninp", "nhid"), "cells": "steps"}
    build_flags = {"channels": ("eval_ninp", "eval_nhid"), "cells": "steps"}
    search_only = frozenset({"ninp", "nhid", "steps", "dropoute", "ops", "include_none"})
    options = {
        "vocab_size": (10000, "words (the corpus's; PTB 10,000 with <eos>)"),
        "ninp": (300, "embedding size of the search network"),
        "nhid": (300, "hidden units of the search network"),
        "eval_ninp": (850, "embedding size of the evaluation network"),
        "eval_nhid": (850, "hidden units of the evaluation network"),
        "steps": (8, "intermediate nodes of the search cell"),
        "dropout": (0.75, "locked dropout on the output"),
        "dropouth": (0.25, "dropout on the hidden state inside the cell"),
        "dropoutx": (0.75, "dropout on the cell's input"),
        "dropouti": (0.2, "locked dropout on the embedding"),
        "dropoute": (0.0, "embedding (word) dropout in search"),
        "eval_dropoute": (0.1, "embedding (word) dropout of the evaluation network"),
        "ops": (None, "candidate ops (default: none, tanh, relu, sigmoid, identity)"),
        "include_none": (True, "keep 'none' among the candidates (--exclude-none removes it)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        c = self.config
        ops = DARTS_OPS if c["ops"] is None else tuple(c["ops"])
        bad = [o for o in ops if o not in DARTS_OPS]
        if bad or not ops or not set(ops) - {"none"}:
            raise GenotypeError(f"darts-rnn option ops must be among {', '.join(DARTS_OPS)} "
                                f"(at least one but none); got {list(ops)}")
        ops = tuple(o for o in DARTS_OPS if o in ops and (c["include_none"] or o != "none"))
        cands = tuple(Candidate(o, zero=(o == "none"), parametric=False) for o in ops)
        edges = tuple((j, i) for i in range(1, c["steps"] + 1) for j in range(i))
        self._group = ChoiceGroup("recurrent", cands, edges)

    def choices(self):
        return [self._group]

    def supernet(self):
        c = self.config
        return DartsRNNCell(c["vocab_size"], c["ninp"], c["nhid"], self._group,
                            steps=c["steps"], dropout=c["dropout"], dropouth=c["dropouth"],
                            dropoutx=c["dropoutx"], dropouti=c["dropouti"],
                            dropoute=c["dropoute"])

    def build(self, genotype):
        c = self.config
        g = self.genotype(genotype)
        return DartsRNNCell(c["vocab_size"], c["eval_ninp"], c["eval_nhid"], None, g,
                            dropout=c["dropout"], dropouth=c["dropouth"],
                            dropoutx=c["dropoutx"], dropouti=c["dropouti"],
                            dropoute=c["eval_dropoute"])

    def parse(self, text):
        return RNNGenotype.parse(text)

    def genotype(self, value):
        if isinstance(value, RNNGenotype):
            return value
        if isinstance(value, str):
            return RNNGenotype.parse(value)
        raise GenotypeError(f"expected a recurrent genotype, its string or a name, got "
                            f"{value!r}")

    def derive(self, probs: Mapping[str, Tensor], *, exclude_none: bool = False,
               edge_weights=None) -> RNNGenotype:
        """Per node the predecessor whose strongest non-``none`` candidate is strongest, with
        that candidate (the official ``genotype()``; ties keep the earlier predecessor)."""
        g = self._group
        p = probs[g.label].detach().double().cpu().clone()
        if edge_weights and g.label in edge_weights:
            p = p * edge_weights[g.label].detach().double().cpu()[:, None]
        if "none" in g.ops:
            p[:, g.ops.index("none")] = -1.0
        gene = []
        inc = g.incoming()
        for i in range(1, self.config["steps"] + 1):
            e = sorted(inc[i], key=lambda e: -float(p[e].max()))[0]
            gene.append((g.ops[int(p[e].argmax())], g.edges[e][0]))
        return RNNGenotype(gene, range(1, self.config["steps"] + 1))

    def genotype_from_indices(self, indices) -> RNNGenotype:
        g = self._group
        gene, counts = [], []
        inc = g.incoming()
        for i in range(1, self.config["steps"] + 1):
            n = 0
            for e in inc[i]:
                k = indices[g.label][e]
                if k >= 0 and not g.candidates[k].zero:
                    gene.append((g.ops[k], g.edges[e][0]))
                    n += 1
            counts.append(n)
        return RNNGenotype(gene, range(1, self.config["steps"] + 1), counts)

    def indices(self, genotype) -> dict[str, list[int]]:
        geno = self.genotype(genotype)
        g = self._group
        if geno.steps != self.config["steps"]:
            raise GenotypeError(f"this genotype has {geno.steps} nodes; the search cell has "
                                f"{self.config['steps']}")
        idx = [-1] * len(g.edges)
        edge_of = {(src, dst): e for e, (src, dst) in enumerate(g.edges)}
        for i, ins in enumerate(geno.nodes(), start=1):
            for op, j in ins:
                if op not in g.ops:
                    raise GenotypeError(f"op '{op}' is not a candidate of this search cell")
                idx[edge_of[(j, i)]] = g.ops.index(op)
        return {g.label: idx}

    def train_recipe(self):
        """DARTS's evaluation (rnn/train.py): batch 64, bptt 35, SGD lr 20, weight decay 8e-7,
        clip 0.25, averaged SGD once the validation loss stops improving (nonmono 5),
        temporal activation regularisation 1e-3; the paper trains 3600 epochs."""
        return {"epochs": 3600, "batch_size": 64, "lr": 20.0, "lr_min": 20.0, "momentum": 0.0,
                "weight_decay": 8e-7, "nesterov": False, "grad_clip": 0.25, "bptt": 35,
                "variable_length": True, "asgd": True, "nonmono": 5, "tar": 1e-3, "ar": 0.0,
                "eval_batch_size": 10, "test_batch_size": 1, "loss_sum_over_time": False}

    def lm_settings(self) -> dict:
        """How the language-modelling task drives this space (DARTS's train_search.py)."""
        return {"bptt": 35, "variable_length": True, "arch_stream": "valid", "tar": 1e-3,
                "ar": 0.0, "eval_batch_size": 10, "loss_sum_over_time": False}


class AdvantageRNNSpace(_LMSpace):
    """AdvantageNAS's recurrent cell on Penn Treebank: 3 nodes, each taking every earlier node
    through its own linear maps (6 edges x 5 candidates: identity, tanh, sigmoid, relu, zero)."""

    name = "advantagenas-rnn"
    tiny = {"nhid": 8, "vocab_size": 50, "nodes": 2}
    search_epochs = 30
    #: AdvantageNAS's PTB search (ptb/custom.py): SGD lr 20 cosine-annealed, clip 0.25
    strategy_defaults = {"lr": 20.0, "lr_min": 0.0, "momentum": 0.0, "weight_decay": 0.0,
                         "grad_clip": 0.25}
    #: theta by Adam lr 3e-3 cosine-annealed, beta1 0.5, clip 1 (util.Param), uniform init
    arch_defaults = {"arch_lr": 3e-3, "arch_lr_schedule": "cosine", "arch_betas": (0.5, 0.999),
                     "arch_weight_decay": 0.0, "arch_grad_clip": 1.0, "init_scale": 0.0}
    defaults_sources = {
        "weights": "AdvantageNAS ptb/custom.py (SGD lr 20 x (cos + 1) / 2 per epoch, "
                   "GradientClipping 0.25, no weight decay)",
        "arch": "AdvantageNAS ptb/custom.py / util.Param (Adam alpha 3e-3 cosine, beta1 0.5, "
                "GradientClipping 1.0, theta = ones)"}
    search_flags = build_flags = {"channels": "nhid", "cells": "nodes"}
    options = {
        "vocab_size": (10000, "words (the corpus's; PTB 10,000 with <eos>)"),
        "nhid": (300, "embedding and hidden size"),
        "nodes": (3, "intermediate nodes (each fed by every earlier node)"),
        "dropout": (0.5, "dropout before and after the cell"),
        "ops": (None, "candidate ops (default: identity, tanh, sigmoid, relu, zero)"),
        "include_none": (True, "keep 'zero' among the candidates (--exclude-none removes it)"),
    }

    def __init__(self, **options):
        super().__init__(**options)
        c = self.config
        ops = ADV_OPS if c["ops"] is None else tuple(c["ops"])
        bad = [o for o in ops if o not in ADV_OPS]
        if bad or not ops:
            raise GenotypeError(f"advantagenas-rnn option ops must be among "
                                f"{', '.join(ADV_OPS)}; got {list(ops)}")
        ops = tuple(o for o in ADV_OPS if o in ops and (c["include_none"] or o != "zero"))
        if not ops:
            raise GenotypeError("advantagenas-rnn: no candidate is left once 'zero' is excluded")
        # 'zero' outputs zero (the role AdvantageNAS's footnote 4 and ptb/custom.py's
        # zero_pos give the worst advantage), but h = 0 sits inside the highway, which still
        # passes n_j (1 - c): it is computed
        cands = tuple(Candidate(o, zero=o == "zero", parametric=o != "zero", computed=True)
                      for o in ops)
        n = c["nodes"]
        edges = tuple((j, i) for i in range(1, n + 1) for j in range(i))
        self._group = ChoiceGroup("edges", cands, edges)

    def choices(self):
        return [self._group]

    def supernet(self):
        c = self.config
        return AdvantageRNNCell(c["vocab_size"], c["nhid"], self._group, nodes=c["nodes"],
                                dropout=c["dropout"])

    def build(self, genotype):
        c = self.config
        return AdvantageRNNCell(c["vocab_size"], c["nhid"], self._group,
                                self.genotype(genotype), nodes=c["nodes"], dropout=c["dropout"])

    def parse(self, text):
        return EdgeGenotype.parse(text, self.config["nodes"], self._group.ops)

    def genotype(self, value):
        if isinstance(value, EdgeGenotype):
            return value
        if isinstance(value, str):
            return self.parse(value)
        raise GenotypeError(f"expected a cell genotype or its string, got {value!r}")

    def derive(self, probs, *, exclude_none: bool = False, edge_weights=None) -> EdgeGenotype:
        """The argmax of every edge (AdvantageNAS's 'argmax'; every edge keeps an op; with
        ``exclude_none`` the best op other than ``zero``)."""
        p = probs[self._group.label].detach()
        zero = torch.tensor(self._group.zero_mask, device=p.device)
        if exclude_none and not bool(zero.all()):
            p = p.masked_fill(zero, -1.0)
        return EdgeGenotype([self._group.ops[int(k)] for k in p.argmax(-1)],
                            self.config["nodes"], self._group.ops)

    def genotype_from_indices(self, indices) -> EdgeGenotype:
        return EdgeGenotype([self._group.ops[k] for k in indices[self._group.label]],
                            self.config["nodes"], self._group.ops)

    def indices(self, genotype):
        g = self.genotype(genotype)
        return {self._group.label: [self._group.ops.index(o) for o in g.ops]}

    def train_recipe(self):
        """AdvantageNAS's retraining (ptb/custom.py): 100 epochs, batch 256, bptt 35, SGD lr 20
        cosine-annealed, clip 0.25; validation and test at batch 1."""
        return {"epochs": 100, "batch_size": 256, "lr": 20.0, "lr_min": 0.0, "momentum": 0.0,
                "weight_decay": 0.0, "nesterov": False, "grad_clip": 0.25, "bptt": 35,
                "variable_length": False, "asgd": False, "nonmono": 5, "tar": 0.0, "ar": 0.0,
                "eval_batch_size": 1, "test_batch_size": 1, "loss_sum_over_time": True}

    def lm_settings(self) -> dict:
        """AdvantageNAS's search: fixed 35-token windows of the training stream, weight and
        theta steps on alternate windows, the loss summed over the window's time steps."""
        return {"bptt": 35, "variable_length": False, "arch_stream": "train-alternate",
                "tar": 0.0, "ar": 0.0, "eval_batch_size": 1, "loss_sum_over_time": True}


def named_rnn_genotype(name: str) -> RNNGenotype:
    try:
        return RNN_GENOTYPES[name]
    except KeyError:
        raise UnknownNameError("recurrent genotype", name, RNN_GENOTYPES) from None
