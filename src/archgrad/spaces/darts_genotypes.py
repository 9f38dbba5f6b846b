"""The DARTS convolutional cell's candidates and genotypes: DARTS's eight ops (and the evaluation-
only ones, RobustDARTS's noise), RobustDARTS's reduced spaces S1-S4, ``DartsGenotype`` and the
named genotypes (NASNet, AmoebaNet, DARTS_V1, DARTS_V2)."""
from __future__ import annotations

import ast
import difflib

from ..core.arch import Candidate
from ..errors import ArchgradError, GenotypeError
from .base import Genotype

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
