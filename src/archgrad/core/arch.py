"""Architecture decisions, their parameters, and the mixing weights a supernet consumes.

* :class:`Candidate` — one candidate operation and its roles (``zero``: its output is zero, the
  role estimators read; ``computed``: whether a forward still computes it, by default not for a
  zero op; ``parametric``: has weights). Roles are properties of the op, not read from names.
* :class:`ChoiceGroup` — a table of categorical decisions that share one candidate list: one row
  per edge (the edge's source and target node are recorded so node-level rules such as PC-DARTS's
  edge normalisation or I-DARTS's node softmax can be written once). Cells that use the same
  group share its parameters (NAS-Bench-201: one 6x5 table for every cell).
* :class:`Parameterization` — how raw architecture parameters map to per-edge probabilities
  (softmax of logits for DARTS; the simplex itself for GAEA's exponentiated gradient).
* :class:`ArchParams` — an ``nn.Module`` holding one parameter table per group plus the mask of
  candidates still alive (XNAS wipeout, P-DARTS pruning), so a checkpoint holds all of it.
* :class:`Mix` — what a supernet's ``forward(x, mix)`` reads: per group an (edges x candidates)
  weight table and, optionally, which candidates to compute per edge (sparse propagation).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Candidate:
    """One candidate op. ``zero``: its output is zero (DARTS's ``none``; AdvantageNAS's PTB
    ``zero``), the role the estimators read (AdvantageNAS's worst advantage, ProxylessNAS's
    frozen gate, derivations that drop it). ``computed``: whether a forward computes it; by
    default a zero op is skipped, but one that sits inside other computation (AdvantageNAS's
    PTB ``zero``, h = 0 inside a highway that still passes its input) says ``computed=True``."""

    name: str
    zero: bool = False
    parametric: bool = True
    computed: bool | None = None

    @property
    def skipped(self) -> bool:
        """Never computed: a forward leaves it out (its contribution is zero)."""
        return self.zero if self.computed is None else not self.computed


@dataclass(frozen=True)
class ChoiceGroup:
    """Decisions sharing a candidate list: ``len(edges)`` rows x ``len(candidates)`` columns."""

    label: str
    candidates: tuple[Candidate, ...]
    edges: tuple[tuple[int, int], ...]
    #: per edge, which candidates it offers (None: all; RobustDARTS's S1 gives each edge its
    #: own two); the architecture starts with the others removed
    allowed: tuple[tuple[bool, ...], ...] | None = None

    def __post_init__(self):
        if not self.label.isidentifier():
            raise ValueError(f"choice label must be an identifier, got {self.label!r}")
        if len({c.name for c in self.candidates}) != len(self.candidates):
            raise ValueError(f"duplicate candidate names in {self.label}")
        if self.allowed is not None and (len(self.allowed) != len(self.edges) or any(
                len(a) != len(self.candidates) or not any(a) for a in self.allowed)):
            raise ValueError(f"{self.label}: allowed needs one row per edge, one flag per "
                             f"candidate, at least one candidate per edge")

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.candidates)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.edges), len(self.candidates))

    @property
    def zero_mask(self) -> tuple[bool, ...]:
        """Per candidate, whether its output is zero (the role estimators read)."""
        return tuple(c.zero for c in self.candidates)

    @property
    def skip_mask(self) -> tuple[bool, ...]:
        """Per candidate, whether a forward leaves it out (see :attr:`Candidate.skipped`)."""
        return tuple(c.skipped for c in self.candidates)

    def index(self, op: str) -> int:
        return self.ops.index(op)

    def incoming(self) -> dict[int, list[int]]:
        """Target node -> indices of the edges (rows) that point to it."""
        out: dict[int, list[int]] = {}
        for e, (_, dst) in enumerate(self.edges):
            out.setdefault(dst, []).append(e)
        return out


# --------------------------------------------------------------------------------------------
# Parameterizations
# --------------------------------------------------------------------------------------------
class Parameterization:
    """Maps a raw parameter table to per-row probabilities over the alive candidates."""

    name = "abstract"

    def init(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def probs(self, theta: Tensor, alive: Tensor, group: ChoiceGroup | None = None) -> Tensor:
        raise NotImplementedError

    def log_probs(self, theta: Tensor, alive: Tensor, group: ChoiceGroup | None = None) -> Tensor:
        p = self.probs(theta, alive, group)
        return torch.where(alive, p.clamp_min(1e-30).log(), torch.full_like(p, -math.inf))

    def concentrated(self, shape: tuple[int, int], index: Tensor) -> Tensor:
        """Parameters whose distribution puts (almost) all its mass on candidate ``index[e]``
        of every row e (a warm start from one architecture, or a test's forced samples)."""
        raise NotImplementedError

    def init_edges(self, n: int, generator: torch.Generator) -> Tensor:
        """Initial edge parameters (PC-DARTS's beta), before per-node normalisation."""
        return self.init((1, n), generator)[0]

    def edge_probs(self, beta: Tensor, nodes: list[list[int]]) -> Tensor:
        """Edge weights normalised over the incoming edges of each node."""
        n = max(len(v) for v in nodes)
        idx = torch.tensor([v + [0] * (n - len(v)) for v in nodes], device=beta.device)
        mask = torch.tensor([[True] * len(v) + [False] * (n - len(v)) for v in nodes],
                            device=beta.device)
        p = self.probs(beta[idx], mask)
        out = torch.zeros_like(beta)
        return out.index_put((idx[mask],), p[mask])


class Softmax(Parameterization):
    """Logits; probabilities by a softmax per row (DARTS eq. 2). Init ``scale * N(0, 1)``,
    DARTS's ``1e-3 * randn``."""

    name = "softmax"

    def __init__(self, init_scale: float = 1e-3):
        self.init_scale = init_scale

    def init(self, shape, generator):
        return self.init_scale * torch.randn(shape, generator=generator)

    def probs(self, theta, alive, group=None):
        return torch.softmax(theta.masked_fill(~alive, -math.inf), dim=-1)

    def log_probs(self, theta, alive, group=None):
        return torch.log_softmax(theta.masked_fill(~alive, -math.inf), dim=-1)

    def concentrated(self, shape, index):
        # logit gap 20: the other candidates keep about exp(-20) = 2e-9 each
        return torch.zeros(shape).scatter_(1, index.view(-1, 1), 20.0)


class NodeSoftmax(Softmax):
    """I-DARTS (Jiang et al. 2019): one softmax over every (incoming edge, op) pair of a node,
    so that edges from different nodes compete directly. A row then sums to the edge's share of
    its node."""

    name = "node-softmax"

    def probs(self, theta, alive, group=None):
        if group is None:
            return super().probs(theta, alive)
        out = torch.zeros_like(theta)
        masked = theta.masked_fill(~alive, -math.inf)
        for rows in group.incoming().values():
            r = torch.tensor(rows, device=theta.device)
            block = masked.index_select(0, r)
            out = out.index_copy(0, r, torch.softmax(block.flatten(), 0).view_as(block))
        return out

    def log_probs(self, theta, alive, group=None):
        return Parameterization.log_probs(self, theta, alive, group)


class Sigmoid(Softmax):
    """FairDARTS (Chu et al. 2020, §3.2): each candidate's weight is an independent sigmoid of
    its logit, so candidates do not compete (a row need not sum to one). Init as DARTS's."""

    name = "sigmoid"

    def probs(self, theta, alive, group=None):
        return torch.sigmoid(theta) * alive

    def log_probs(self, theta, alive, group=None):
        return Parameterization.log_probs(self, theta, alive, group)

    def concentrated(self, shape, index):
        return torch.full(shape, -20.0).scatter_(1, index.view(-1, 1), 20.0)


class Dirichlet(Softmax):
    """DrNAS (Chen et al. 2021, §3.1): per edge a Dirichlet distribution with concentration
    beta = ELU(theta) + 1 (positive, the release's ``F.elu(x) + 1``); ``probs`` is its mean
    beta / sum(beta) over the alive candidates (the estimator samples the mixing weights)."""

    name = "dirichlet"

    def concentration(self, theta: Tensor, alive: Tensor) -> Tensor:
        return (torch.nn.functional.elu(theta) + 1.0) * alive

    def probs(self, theta, alive, group=None):
        c = self.concentration(theta, alive)
        return c / c.sum(-1, keepdim=True)

    def log_probs(self, theta, alive, group=None):
        return Parameterization.log_probs(self, theta, alive, group)

    def concentrated(self, shape, index):
        # concentration 1e4 against 1 for the others (a concentration near 0 draws Gamma
        # samples that underflow to 0, where their gradient is undefined)
        return torch.zeros(shape).scatter_(1, index.view(-1, 1), 1e4)


class Simplex(Parameterization):
    """The parameters are the probabilities themselves (non-negative rows summing to one), as
    in GAEA's exponentiated-gradient updates. Initialised uniform over the alive candidates,
    optionally perturbed multiplicatively by ``exp(init_scale * N(0,1))`` to break ties."""

    name = "simplex"

    def __init__(self, init_scale: float = 1e-3):
        self.init_scale = init_scale

    def init(self, shape, generator):
        w = torch.exp(self.init_scale * torch.randn(shape, generator=generator))
        return w / w.sum(-1, keepdim=True)

    def probs(self, theta, alive, group=None):
        return theta * alive

    def concentrated(self, shape, index):
        rest = 1e-6  # each other candidate
        out = torch.full(shape, rest)
        return out.scatter_(1, index.view(-1, 1), 1.0 - rest * (shape[1] - 1))


# --------------------------------------------------------------------------------------------
# Architecture parameters
# --------------------------------------------------------------------------------------------
EDGE_SUFFIX = ":edges"


class ArchParams(nn.Module):
    """One parameter table per choice group, and the mask of candidates still alive.

    The module lives outside the supernet (the supernet holds weights only); its
    ``state_dict`` holds everything needed to resume.
    """

    def __init__(self, groups: Sequence[ChoiceGroup], parameterization: Parameterization,
                 generator: torch.Generator | None = None, edge_weights: bool = False):
        super().__init__()
        self.groups = {g.label: g for g in groups}
        self.parameterization = parameterization
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.theta = nn.ParameterDict(
            {g.label: nn.Parameter(parameterization.init(g.shape, gen)) for g in groups})
        for g in groups:
            alive = torch.ones(g.shape, dtype=torch.bool) if g.allowed is None else \
                torch.tensor(g.allowed, dtype=torch.bool)
            self.register_buffer(f"alive_{g.label}", alive)
        #: per-edge weights normalised over each node's incoming edges (PC-DARTS's beta)
        self.beta = nn.ParameterDict()
        self._nodes: dict[str, list[list[int]]] = {}
        if edge_weights:
            for g in groups:
                self._nodes[g.label] = [v for _, v in sorted(g.incoming().items())]
                init = torch.zeros(len(g.edges))
                for v in self._nodes[g.label]:
                    init[v] = parameterization.init_edges(len(v), gen)
                self.beta[g.label] = nn.Parameter(init)
        self._active_cache: dict[str, list[tuple[int, ...]]] | None = None

    # -- access ------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        return list(self.groups)

    def alive(self, label: str) -> Tensor:
        return getattr(self, f"alive_{label}")

    def probs(self) -> dict[str, Tensor]:
        """Differentiable per-edge probabilities."""
        return {k: self.parameterization.probs(self.theta[k], self.alive(k), g)
                for k, g in self.groups.items()}

    def log_probs(self) -> dict[str, Tensor]:
        return {k: self.parameterization.log_probs(self.theta[k], self.alive(k), g)
                for k, g in self.groups.items()}

    @torch.no_grad()
    def probs_detached(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.probs().items()}

    @property
    def has_edge_weights(self) -> bool:
        return len(self.beta) > 0

    def edge_weights(self) -> dict[str, Tensor]:
        """Differentiable edge weights (empty without edge normalisation)."""
        return {k: self.parameterization.edge_probs(b, self._nodes[k])
                for k, b in self.beta.items()}

    def nodes(self, label: str) -> list[list[int]]:
        return self._nodes[label]

    def param(self, key: str) -> nn.Parameter:
        """The parameter a gradient key names: ``label`` (theta) or ``label:edges`` (beta)."""
        if key.endswith(EDGE_SUFFIX):
            return self.beta[key[:-len(EDGE_SUFFIX)]]
        return self.theta[key]

    def param_keys(self) -> list[str]:
        return list(self.theta) + [k + EDGE_SUFFIX for k in self.beta]

    def dense_active(self) -> dict[str, list[tuple[int, ...]]]:
        """Per edge, the candidates a dense forward computes: alive and not skipped."""
        if self._active_cache is None:
            cache = {}
            for label, g in self.groups.items():
                alive = self.alive(label).cpu().tolist()
                cache[label] = [tuple(k for k, c in enumerate(g.candidates)
                                      if alive[e][k] and not c.skipped)
                                for e in range(len(g.edges))]
            self._active_cache = cache
        return self._active_cache

    @torch.no_grad()
    def concentrate(self, indices: Mapping[str, Sequence[int]]) -> None:
        """Put (almost) all of each edge's probability on candidate ``indices[label][e]``."""
        for label, idx in indices.items():
            t = self.theta[label]
            i = torch.as_tensor(list(idx), dtype=torch.long)
            t.copy_(self.parameterization.concentrated(tuple(t.shape), i).to(t))

    # -- pruning -----------------------------------------------------------------------------
    @torch.no_grad()
    def kill(self, label: str, mask: Tensor) -> int:
        """Permanently remove candidates (``mask`` True = remove). Never removes the last alive
        candidate of an edge. Returns how many were removed."""
        alive = self.alive(label)
        mask = mask.to(alive.device) & alive
        keep_one = (alive & ~mask).sum(-1) == 0
        if keep_one.any():  # never empty an edge
            mask[keep_one] = False
        n = int(mask.sum())
        if n:
            alive &= ~mask
            self._active_cache = None
        return n

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._active_cache = None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.theta.items()) + \
            f", parameterization={self.parameterization.name}"


# --------------------------------------------------------------------------------------------
# Mixing weights
# --------------------------------------------------------------------------------------------
@dataclass
class Mix:
    """Mixing weights for one forward pass of a supernet.

    ``weights[label]`` is an (edges x candidates) table. ``active[label][e]`` lists the
    candidates edge ``e`` computes; where ``active`` has no entry for a label, every candidate
    that is not zero-valued is computed. A candidate outside ``active`` is never computed (and
    gets no gradient), which is how one-hot samples cost one op per edge. ``edge_scale[label]``
    optionally multiplies each edge's output (PC-DARTS edge normalisation).
    """

    weights: dict[str, Tensor]
    active: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)
    edge_scale: dict[str, Tensor] = field(default_factory=dict)
    #: candidates that are not computed still add their weight ``w[k]`` (a constant 1 times the
    #: weight): zero in value when the weights are hard, but a gradient of sum(dL/dO) for them.
    #: This is GDAS's official implementation of its straight-through estimator.
    inactive_as_constant: bool = False
    #: dropout rate on the output of identity skip connections while training (P-DARTS §3.3;
    #: the official code wraps only ``Identity`` in dropout, never the stride-2 skip)
    skip_dropout: float = 0.0
    #: every cell of the supernet mixes with its own copy of ``weights`` (:meth:`layer`), a
    #: leaf whose gradient the backward fills (Λ-DARTS's per-cell architecture gradients);
    #: ``layers`` holds the copies (cell index -> label -> tensor), given or made on first use
    layered: bool = False
    layers: dict = field(default_factory=dict)

    def layer(self, index: int) -> "Mix":
        """The mix cell ``index`` of a supernet uses: this one, or its own copy of the weights
        when :attr:`layered`."""
        if not self.layered:
            return self
        ws = self.layers.get(index)
        if ws is None:
            ws = {k: v.detach().clone().requires_grad_(True) for k, v in self.weights.items()}
            self.layers[index] = ws
        return Mix(ws, self.active, self.edge_scale, self.inactive_as_constant,
                   self.skip_dropout)

    def edge_active(self, label: str, e: int, skip_mask: Sequence[bool]) -> Iterable[int]:
        """The candidates edge ``e`` computes: ``active``'s, else all but the skipped ones
        (``skip_mask``: the group's :attr:`ChoiceGroup.skip_mask`)."""
        act = self.active.get(label)
        if act is None:
            return [k for k, z in enumerate(skip_mask) if not z]
        return act[e]

    @staticmethod
    def onehot(indices: Mapping[str, Sequence[int]], groups: Mapping[str, ChoiceGroup],
               device=None, dtype=None) -> "Mix":
        """A discrete architecture: one candidate per edge (index -1: edge absent)."""
        weights, active = {}, {}
        for label, idx in indices.items():
            g = groups[label]
            w = torch.zeros(g.shape, device=device, dtype=dtype or torch.get_default_dtype())
            act = []
            for e, k in enumerate(idx):
                if k >= 0:
                    w[e, k] = 1.0
                    act.append((k,) if not g.candidates[k].skipped else ())
                else:
                    act.append(())
            weights[label], active[label] = w, act
        return Mix(weights, active)

    def to(self, device=None, dtype=None) -> "Mix":
        return Mix({k: v.to(device=device, dtype=dtype) for k, v in self.weights.items()},
                   dict(self.active),
                   {k: v.to(device=device, dtype=dtype) for k, v in self.edge_scale.items()},
                   self.inactive_as_constant, self.skip_dropout, self.layered,
                   {i: {k: v.to(device=device, dtype=dtype) for k, v in ws.items()}
                    for i, ws in self.layers.items()})


def entropy(probs: Mapping[str, Tensor]) -> float:
    """Mean per-edge entropy (nats) of the architecture distribution."""
    total, n = 0.0, 0
    for p in probs.values():
        p = p.detach().double()
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)  # each edge's distribution
        h = -(p * p.clamp_min(1e-30).log()).sum(-1)
        total += float(h.sum())
        n += h.numel()
    return total / max(n, 1)


def max_prob(probs: Mapping[str, Tensor]) -> float:
    """Mean over edges of the largest probability of each edge's distribution (1/K when
    uniform, 1 when every edge has decided): a readable companion of the entropy."""
    total, n = 0.0, 0
    for p in probs.values():
        p = p.detach().double()
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-30)
        m = p.max(-1).values
        total += float(m.sum())
        n += m.numel()
    return total / max(n, 1)
