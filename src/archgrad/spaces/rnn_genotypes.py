"""The recurrent cells' candidates and genotypes: DARTS's (one predecessor and one activation per
node, ``RNNGenotype``, with DARTS_V1/V2, ENAS and the other named cells) and AdvantageNAS's
(one candidate per edge, ``EdgeGenotype``)."""
from __future__ import annotations

import ast
from collections.abc import Sequence

import torch

from ..errors import GenotypeError
from .base import Genotype

DARTS_OPS = ("none", "tanh", "relu", "sigmoid", "identity")
ADV_OPS = ("identity", "tanh", "sigmoid", "relu", "zero")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "identity": lambda x: x, "zero": torch.zeros_like}


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
