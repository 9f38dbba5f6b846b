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
"""
from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arch import Candidate, ChoiceGroup, Mix
from ..errors import GenotypeError, UnknownNameError
from .base import Genotype, SearchSpace, Supernet

DARTS_OPS = ("none", "tanh", "relu", "sigmoid", "identity")
ADV_OPS = ("identity", "tanh", "sigmoid", "relu", "zero")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "identity": lambda x: x, "zero": torch.zeros_like}


@dataclass
class LMOutput:
    """A language model's output: log-probabilities (T, B, V) and the cell's hidden states
    (T, B, H) before the output dropout."""

    log_probs: Tensor
    hidden: Tensor


def _mask(shape, p: float, like: Tensor) -> Tensor | None:
    """A dropout mask (scaled by 1/keep) shared over time: DARTS's mask2d / LockedDropout."""
    if p <= 0:
        return None
    return like.new_empty(shape).bernoulli_(1 - p) / (1 - p)


def embedded_dropout(embed: nn.Embedding, words: Tensor, p: float) -> Tensor:
    """Whole words dropped from the embedding (Gal & Ghahramani; DARTS's embedded_dropout)."""
    w = embed.weight
    if p > 0:
        mask = w.new_empty((w.size(0), 1)).bernoulli_(1 - p) / (1 - p)
        w = w * mask
    return F.embedding(words, w)


# ----------------------------------------------------------------------------------------------
# Genotypes
# ----------------------------------------------------------------------------------------------
class RNNGenotype(Genotype):
    """DARTS's recurrent genotype: per node the (op, predecessor) it takes, and the nodes
    averaged into the output. ``inputs`` (printed only when not all 1) lets a node take several
    inputs, summed, as a sampled architecture of the search network has."""

    __slots__ = ("recurrent", "concat", "inputs")

    def __init__(self, recurrent, concat, inputs=None):
        rec = []
        for i, entry in enumerate(recurrent):
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2
                    and isinstance(entry[0], str) and isinstance(entry[1], int)
                    and not isinstance(entry[1], bool)):
                raise GenotypeError(f"recurrent entry {i} is {entry!r}; each entry is an "
                                    f"(op name, predecessor index) pair such as ('tanh', 0)")
            rec.append((entry[0], entry[1]))
        inputs = tuple(int(n) for n in inputs) if inputs is not None else (1,) * len(rec)
        if sum(inputs) != len(rec) or any(n < 0 for n in inputs):
            raise GenotypeError(f"inputs {list(inputs)} does not add up to the {len(rec)} "
                                f"recurrent entries")
        k = 0
        for node, n in enumerate(inputs, start=1):
            for pos, (op, j) in enumerate(rec[k:k + n]):
                if op not in DARTS_OPS or op == "none":
                    raise GenotypeError(f"unknown recurrent op '{op}' at entry {k + pos} (node "
                                        f"{node}); ops are: tanh, relu, sigmoid, identity")
                if not 0 <= j < node:
                    raise GenotypeError(f"entry {k + pos}: node {node} cannot take input {j} "
                                        f"(only 0..{node - 1})")
            k += n
        concat = tuple(int(c) for c in concat)
        if not concat or any(not 0 <= c <= len(inputs) for c in concat):
            raise GenotypeError(f"concat {list(concat)} must name nodes 0..{len(inputs)}")
        object.__setattr__(self, "recurrent", tuple(rec))
        object.__setattr__(self, "concat", concat)
        object.__setattr__(self, "inputs", inputs)

    def __setattr__(self, *_):
        raise AttributeError("genotypes are immutable")

    @property
    def steps(self) -> int:
        return len(self.inputs)

    def nodes(self) -> list[list[tuple[str, int]]]:
        out, k = [], 0
        for n in self.inputs:
            out.append(list(self.recurrent[k:k + n]))
            k += n
        return out

    def __str__(self) -> str:
        rec = ", ".join(f"('{o}', {j})" for o, j in self.recurrent)
        s = f"Genotype(recurrent=[{rec}], concat={list(self.concat)}"
        if any(n != 1 for n in self.inputs):
            s += f", inputs={list(self.inputs)}"
        return s + ")"

    @classmethod
    def parse(cls, text: str) -> "RNNGenotype":
        s = text.strip()
        if s in RNN_GENOTYPES:
            return RNN_GENOTYPES[s]
        form = ("expected DARTS's form Genotype(recurrent=[('sigmoid', 0), ('relu', 1), ...], "
                f"concat=[1, ..., 8]) or a named genotype ({', '.join(RNN_GENOTYPES)})")
        try:
            tree = ast.parse(s, mode="eval").body
        except SyntaxError:
            raise GenotypeError(f"malformed recurrent genotype: {form}") from None
        if not (isinstance(tree, ast.Call) and getattr(tree.func, "id", "") == "Genotype"):
            raise GenotypeError(f"malformed recurrent genotype: {form}")
        values = dict(zip(("recurrent", "concat"), tree.args))
        for kw in tree.keywords:
            if kw.arg is None or kw.arg in values:
                raise GenotypeError(f"malformed recurrent genotype (repeated field): {form}")
            values[kw.arg] = kw.value
        extra = set(values) - {"recurrent", "concat", "inputs"}
        if extra or not {"recurrent", "concat"} <= set(values):
            raise GenotypeError(f"malformed recurrent genotype: {form}")
        fields = {}
        for k, v in values.items():
            try:
                if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "range":
                    fields[k] = list(range(*(ast.literal_eval(a) for a in v.args)))
                else:
                    fields[k] = ast.literal_eval(v)
            except (ValueError, TypeError, SyntaxError):
                raise GenotypeError(f"malformed recurrent genotype: {k} is not a literal "
                                    f"list") from None
        return cls(**fields)

    def cell_graph(self):
        """The cell for ``archgrad draw`` (as DARTS's figures: x_t and h_{t-1} into node 0)."""
        n = self.steps
        nodes = [("xt", "x_{t}", "input", 0, 0.8), ("hp", "h_{t-1}", "input", 0, -0.8),
                 ("n0", "0", "inner", 1, 0.0)]
        nodes += [(f"n{i}", str(i), "inner", 1 + i, 1.2 - 2.4 * (i - 1) / max(n - 1, 1))
                  for i in range(1, n + 1)]
        nodes.append(("ht", "h_{t}", "output", n + 2, 0.0))
        edges = [("xt", "n0", ""), ("hp", "n0", "")]
        for i, ins in enumerate(self.nodes(), start=1):
            edges += [(f"n{j}", f"n{i}", op) for op, j in ins]
        edges += [(f"n{c}", "ht", "") for c in self.concat]
        return [("recurrent cell", nodes, edges)]


RNN_GENOTYPES: dict[str, RNNGenotype] = {}


def register_rnn_genotype(name: str, genotype: RNNGenotype) -> None:
    RNN_GENOTYPES[name] = genotype


# DARTS's rnn/genotypes.py
register_rnn_genotype("DARTS_V1", RNNGenotype(
    [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
     ("relu", 5), ("relu", 1)], range(1, 9)))
register_rnn_genotype("DARTS_V2", RNNGenotype(
    [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2), ("sigmoid", 5),
     ("tanh", 3), ("relu", 5)], range(1, 9)))
RNN_GENOTYPES["DARTS"] = RNN_GENOTYPES["DARTS_V2"]
register_rnn_genotype("ENAS", RNNGenotype(
    [("tanh", 0), ("tanh", 1), ("relu", 1), ("tanh", 3), ("tanh", 3), ("relu", 3), ("relu", 4),
     ("relu", 7), ("relu", 8), ("relu", 8), ("relu", 8)], [2, 5, 6, 9, 10, 11]))


class EdgeGenotype(Genotype):
    """One op on every edge of a cell whose node i takes every earlier node (AdvantageNAS's
    recurrent cell): ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, as NAS-Bench-201 writes cells."""

    __slots__ = ("ops", "nodes")

    def __init__(self, ops: Sequence[str], nodes: int, allowed: Sequence[str] = ADV_OPS):
        ops = tuple(ops)
        if len(ops) != nodes * (nodes + 1) // 2:
            raise GenotypeError(f"a cell of {nodes} nodes has {nodes * (nodes + 1) // 2} edges, "
                                f"got {len(ops)} ops")
        bad = [o for o in ops if o not in allowed]
        if bad:
            raise GenotypeError(f"unknown op '{bad[0]}'; ops are: {', '.join(allowed)}")
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "nodes", nodes)

    def __setattr__(self, *_):
        raise AttributeError("genotypes are immutable")

    def __str__(self) -> str:
        parts, e = [], 0
        for i in range(1, self.nodes + 1):
            parts.append("|" + "|".join(f"{self.ops[e + j]}~{j}" for j in range(i)) + "|")
            e += i
        return "+".join(parts)

    @classmethod
    def parse(cls, text: str, nodes: int, allowed=ADV_OPS) -> "EdgeGenotype":
        import re
        form = "expected the form |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        parts = text.strip().split("+")
        if len(parts) != nodes:
            raise GenotypeError(f"malformed cell genotype {text!r}: {nodes} nodes expected; "
                                f"{form}")
        ops = []
        for i, part in enumerate(parts, start=1):
            if not (part.startswith("|") and part.endswith("|")):
                raise GenotypeError(f"malformed cell genotype {text!r}: {form}")
            items = part[1:-1].split("|")
            if len(items) != i:
                raise GenotypeError(f"malformed cell genotype {text!r}: node {i} needs {i} "
                                    f"inputs, got {len(items)}")
            for j, item in enumerate(items):
                m = re.fullmatch(r"([a-z_]+)~(\d+)", item)
                if not m or int(m.group(2)) != j:
                    raise GenotypeError(f"malformed cell genotype {text!r}: entry {item!r} of "
                                        f"node {i} should be 'op~{j}'")
                ops.append(m.group(1))
        return cls(ops, nodes, allowed)

    def cell_graph(self):
        """The cell for ``archgrad draw``: x_t and h_{t-1} into node 0 (s0), every edge with
        its op (``zero`` edges still pass the gated predecessor), nodes 1..n averaged into h_t."""
        n = self.nodes
        nodes = [("xt", "x_{t}", "input", 0, 0.8), ("hp", "h_{t-1}", "input", 0, -0.8),
                 ("n0", "0", "inner", 1, 0.0)]
        nodes += [(f"n{i}", str(i), "inner", 1 + i, 1.0 if i % 2 else -1.0)
                  for i in range(1, n + 1)]
        nodes.append(("ht", "h_{t}", "output", n + 2, 0.0))
        edges, e = [("xt", "n0", ""), ("hp", "n0", "")], 0
        for i in range(1, n + 1):
            for j in range(i):
                edges.append((f"n{j}", f"n{i}", self.ops[e]))
                e += 1
        edges += [(f"n{i}", "ht", "") for i in range(1, n + 1)]
        return [("AdvantageNAS recurrent cell", nodes, edges)]


# ----------------------------------------------------------------------------------------------
# The language model around a cell
# ----------------------------------------------------------------------------------------------
class LanguageModel(Supernet):
    """Embedding -> recurrent cell over time -> decoder, with the dropouts of the paper's
    code. Subclasses implement :meth:`cell_step` (one time step of the cell) and
    :meth:`step_masks` (the dropout masks shared by the time steps of a window)."""

    def __init__(self, vocab: int, ninp: int, nhid: int, *, tie: bool, dropout: float,
                 dropouti: float, dropoute: float, locked: bool, init_range: float,
                 decoder_bias_zero: bool = True):
        super().__init__()
        self.vocab, self.ninp, self.nhid = vocab, ninp, nhid
        self.dropout, self.dropouti, self.dropoute, self.locked = dropout, dropouti, dropoute, \
            locked
        self.init_range = init_range
        self.encoder = nn.Embedding(vocab, ninp)
        self.decoder = nn.Linear(nhid, vocab)
        if tie:
            if ninp != nhid:
                raise GenotypeError("weight tying needs equal embedding and hidden sizes")
            self.decoder.weight = self.encoder.weight
        self._decoder_bias_zero = decoder_bias_zero

    def reset_parameters(self) -> None:
        r = self.init_range
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-r, r)
            if self._decoder_bias_zero:
                self.decoder.bias.zero_()

    def init_state(self, batch: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch, self.nhid)

    def _drop(self, x: Tensor, p: float) -> Tensor:
        """Locked (one mask per sequence, DARTS) or standard (AdvantageNAS) dropout."""
        if not self.training or p <= 0:
            return x
        if self.locked:
            return x * _mask((1, x.size(1), x.size(2)), p, x)
        return F.dropout(x, p, True)

    def forward(self, window, mix: Mix | None = None) -> LMOutput:
        words = window.tokens
        T, B = words.shape
        emb = embedded_dropout(self.encoder, words, self.dropoute if self.training else 0.0)
        emb = self._drop(emb, self.dropouti)
        h = window.state_in if window.state_in is not None else \
            self.init_state(B, emb.float())
        masks = self.step_masks(B, emb) if self.training else None
        hiddens = []
        for t in range(T):
            h = self.cell_step(emb[t], h, mix, masks)
            hiddens.append(h)
        raw = torch.stack(hiddens)
        window.record_state(h)
        out = self._drop(raw, self.dropout)
        logits = self.decoder(out.reshape(-1, out.size(-1)))
        return LMOutput(F.log_softmax(logits, -1).view(T, B, -1), raw)

    def step_masks(self, batch: int, like: Tensor):
        return None

    def cell_step(self, x: Tensor, h: Tensor, mix, masks) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def _highway(s: Tensor, c: Tensor, h: Tensor) -> Tensor:
    """s + c (h - s): the highway connection of both cells."""
    return s + c * (h - s)


class DartsRNNCell(LanguageModel):
    """DARTS's recurrent cell: the search network (``genotype=None``: every edge, mixed by the
    mix, batch norm on the states) or the network of one genotype."""

    def __init__(self, vocab, ninp, nhid, group: ChoiceGroup | None, genotype=None, *,
                 steps: int = 8, dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2,
                 dropoute=0.0, tie=True, init_range=0.04):
        super().__init__(vocab, ninp, nhid, tie=tie, dropout=dropout, dropouti=dropouti,
                         dropoute=dropoute, locked=True, init_range=init_range)
        self.group, self.genotype = group, genotype
        self.dropouth, self.dropoutx = dropouth, dropoutx
        n = genotype.steps if genotype is not None else steps
        self.steps = n
        self.W0 = nn.Parameter(torch.empty(ninp + nhid, 2 * nhid))
        self.Ws = nn.ParameterList(nn.Parameter(torch.empty(nhid, 2 * nhid)) for _ in range(n))
        self.bn = nn.BatchNorm1d(nhid, affine=False) if genotype is None else None
        if group is not None:
            # edges (pred j, node i) in the order of node i then j, as the official weights
            self._incoming = group.incoming()
        self.concat = tuple(genotype.concat) if genotype is not None else tuple(range(1, n + 1))
        self.reset_parameters()

    def step_masks(self, batch, like):
        xm = _mask((batch, self.ninp), self.dropoutx, like)
        hm = _mask((batch, self.nhid), self.dropouth, like)
        return xm, hm

    def _init_state(self, x, h, masks):
        if masks is not None:
            xm, hm = masks
            x = x * xm if xm is not None else x
            hh = h * hm if hm is not None else h
        else:
            hh = h
        c0, h0 = torch.split(torch.cat([x, hh], -1) @ self.W0, self.nhid, dim=-1)
        return _highway(h, c0.sigmoid(), h0.tanh())

    def cell_step(self, x, h, mix, masks):
        s0 = self._init_state(x, h, masks)
        hm = masks[1] if masks is not None else None
        if self.genotype is not None:  # the network of one genotype (official DARTSCell)
            states = [s0]
            for i, ins in enumerate(self.genotype.nodes()):
                total = None
                for op, j in ins:
                    sp = states[j]
                    ch = (sp * hm if hm is not None else sp) @ self.Ws[i]
                    c, hh = torch.split(ch, self.nhid, dim=-1)
                    y = _highway(sp, c.sigmoid(), ACTIVATIONS[op](hh))
                    total = y if total is None else total + y
                states.append(total if total is not None else torch.zeros_like(s0))
            return torch.stack([states[i] for i in self.concat], -1).mean(-1)
        # the search network: one map per node shared by its incoming edges; per node one
        # matmul over its predecessors' states, each candidate computed on the predecessors
        # whose edge has it active (a sampled architecture computes one op per edge)
        label, zero = self.group.label, self.group.skip_mask
        w = mix.weights[label]
        ops = self.group.ops
        states = [self.bn(s0)]
        for i in range(self.steps):
            edges = self._incoming[i + 1]
            act = {e: [k for k in mix.edge_active(label, e, zero) if not zero[k]] for e in edges}
            live = [e for e in edges if act[e]]
            s = None
            if live:
                S = torch.stack([states[self.group.edges[e][0]] for e in live])  # (n, B, H)
                ch = (S * hm if hm is not None else S) @ self.Ws[i]
                c, hh = torch.split(ch, self.nhid, dim=-1)
                c = c.sigmoid()
                for k in sorted({k for e in live for k in act[e]}):
                    rows = [r for r, e in enumerate(live) if k in act[e]]
                    wk = w[[live[r] for r in rows], k].view(-1, 1, 1)
                    if len(rows) == len(live):
                        term = _highway(S, c, ACTIVATIONS[ops[k]](hh))
                    else:
                        idx = torch.tensor(rows, device=S.device)
                        Sk = S.index_select(0, idx)
                        term = _highway(Sk, c.index_select(0, idx),
                                        ACTIVATIONS[ops[k]](hh.index_select(0, idx)))
                    y = (wk * term).sum(0)
                    s = y if s is None else s + y
            if mix.inactive_as_constant:  # GDAS's straight-through term of the others
                for e in edges:
                    rest = [k for k in range(len(ops)) if k not in act[e]]
                    if rest:
                        cst = w[e, rest].sum()
                        s = torch.zeros_like(s0) + cst if s is None else s + cst
            s = torch.zeros_like(s0) if s is None else s
            states.append(self.bn(s))
        return torch.stack(states[-len(self.concat):], -1).mean(-1)


class AdvantageRNNCell(LanguageModel):
    """AdvantageNAS's recurrent cell: every edge j -> i with its own maps (lh, lc); the search
    network mixes the candidates on each edge inside the highway, a genotype fixes one op per
    edge."""

    def __init__(self, vocab, nhid, group: ChoiceGroup, genotype: EdgeGenotype | None = None,
                 *, nodes: int = 3, dropout=0.5, init_range=0.1):
        super().__init__(vocab, nhid, nhid, tie=False, dropout=dropout, dropouti=dropout,
                         dropoute=0.0, locked=False, init_range=init_range,
                         decoder_bias_zero=False)
        self.group, self.genotype, self.nodes = group, genotype, nodes
        lin = lambda: nn.Linear(nhid, nhid, bias=False)  # noqa: E731
        self.init_maps = nn.ModuleList(lin() for _ in range(4))  # c from h, h from h, x, x
        n_edges = nodes * (nodes + 1) // 2
        self.lh = nn.ModuleList(lin() for _ in range(n_edges))
        self.lc = nn.ModuleList(lin() for _ in range(n_edges))
        self._incoming = group.incoming()
        self.reset_parameters()

    def cell_step(self, x, h, mix, masks):
        m = self.init_maps
        c0 = torch.sigmoid(m[0](h) + m[2](x))
        h0 = torch.tanh(m[1](h) + m[3](x))
        states = [_highway(h, c0, h0)]  # = c0 * h0 when h = 0, as the official first step
        label, ops = self.group.label, self.group.ops
        for i in range(1, self.nodes + 1):
            total = None
            for e in self._incoming[i]:
                j = self.group.edges[e][0]
                nj = states[j]
                c = torch.sigmoid(self.lc[e](nj))
                if self.genotype is not None:
                    y = self._act(self.genotype.ops[e], nj, e)
                else:
                    w = mix.weights[label]
                    act = list(mix.edge_active(label, e, self.group.skip_mask))
                    y = None
                    for k in act:
                        t = self._act(ops[k], nj, e) * w[e, k]
                        y = t if y is None else y + t
                    if mix.inactive_as_constant:  # the official GD mode: scale(1, a_k)
                        rest = [k for k in range(len(ops)) if k not in act]
                        if rest:
                            cst = w[e, rest].sum()
                            y = torch.zeros_like(nj) + cst if y is None else y + cst
                    y = torch.zeros_like(nj) if y is None else y
                t = _highway(nj, c, y)
                total = t if total is None else total + t
            states.append(total / i)
        return torch.stack(states[1:], -1).mean(-1)

    def _act(self, op: str, nj: Tensor, e: int) -> Tensor:
        if op == "zero":  # h = 0 x: no map needed
            return torch.zeros_like(nj)
        return ACTIVATIONS[op](self.lh[e](nj))


# ----------------------------------------------------------------------------------------------
# Spaces
# ----------------------------------------------------------------------------------------------
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
