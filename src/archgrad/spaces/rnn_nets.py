"""The recurrent networks: the language model around a cell (embedding, dropouts, decoder),
DARTS's recurrent cell and AdvantageNAS's, each computing a window of time steps with the
mixing weights from outside."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.arch import ChoiceGroup, Mix
from ..errors import GenotypeError
from .base import Supernet
from .rnn_genotypes import ACTIVATIONS, EdgeGenotype


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
