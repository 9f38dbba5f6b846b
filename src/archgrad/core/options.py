"""Typed options: every space and strategy option has a kind and a range, checked before
anything is built or written, with a one-line error naming the option and what it accepts.

A :class:`Spec` is inferred from an option's default (``float``, ``int``, ``bool``, ``str``,
sequences) and refined by :data:`KNOWN`, a table of the ranges of the options the library uses
(names are shared across strategies: ``lr`` means the same everywhere). Values arriving from the
command line are already parsed (JSON / Python literals); a comma-separated string is accepted
where a list is expected (``--set ops=none,skip_connect``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ArchgradError


@dataclass(frozen=True)
class Spec:
    """kind: 'float', 'int', 'bool', 'str', 'floats' / 'ints' / 'strs' (sequences), 'any'.
    ``lo`` / ``hi``: inclusive bounds (``lo_open``: lo excluded); ``choices``: allowed strings;
    ``none``: None accepted; ``also``: other accepted strings beside a number (SNAS's
    resource levels); ``length``: a sequence's required length."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] | None = None
    none: bool = False
    also: tuple[str, ...] = ()
    length: int | None = None

    def describe(self) -> str:
        if self.kind == "bool":
            out = "true or false"
        elif self.choices:
            out = "one of " + ", ".join(self.choices)
        else:
            noun = {"float": "a number", "int": "an integer", "str": "a string",
                    "floats": "a list of numbers", "ints": "a list of integers",
                    "strs": "a list of names", "any": "a value"}[self.kind]
            if self.length:
                noun = f"{self.length} " + noun.replace("a list of ", "")
            rng = ""
            if self.lo is not None and self.hi is not None:
                rng = f" in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
            elif self.lo is not None:
                rng = f" {'>' if self.lo_open else '>='} {self.lo:g}"
            elif self.hi is not None:
                rng = f" <= {self.hi:g}"
            out = noun + rng
        if self.also:
            out += " or " + ", ".join(self.also)
        if self.none:
            out += " (or none)"
        return out


#: the deepest network a depth option (cells) accepts: a network is built, even on the meta
#: device, one module at a time, and 100 DARTS cells already take seconds to build
MAX_DEPTH = 100
POS = dict(lo=0.0, lo_open=True)
NONNEG = dict(lo=0.0)
UNIT = dict(lo=0.0, hi=1.0)

#: ranges of the options the library uses, by name
KNOWN: dict[str, Spec] = {
    # weights
    "lr": Spec("float", **POS), "lr_min": Spec("float", **NONNEG),
    "lr_epochs": Spec("int", none=True, lo=1),
    "momentum": Spec("float", lo=0.0, hi=0.999999), "weight_decay": Spec("float", **NONNEG),
    "grad_clip": Spec("float", none=True, **POS), "nesterov": Spec("bool"),
    "optimizer": Spec("str", choices=("sgd", "adam")),
    # schedule
    "warmup_epochs": Spec("float", **NONNEG), "arch_every": Spec("int", lo=1),
    "data_split": Spec("str", choices=("halves", "all", "all-resampled")),
    "derive": Spec("str", choices=("argmax", "process-best", "process-best-mean",
                                    "best-valid", "perturbation")),
    "pt_tune_epochs": Spec("float", **NONNEG), "pt_examples": Spec("int", lo=0),
    "exclude_none": Spec("bool"), "bilevel": Spec("bool"),
    # architecture optimizer
    "arch_lr": Spec("float", **POS), "arch_betas": Spec("floats", length=2, lo=0.0, hi=0.999999),
    "arch_weight_decay": Spec("float", **NONNEG), "arch_grad_clip": Spec("float", none=True, **POS),
    "arch_lr_schedule": Spec("str", choices=("constant", "cosine")),
    "init_scale": Spec("float", **NONNEG), "arch_eps": Spec("float", **POS),
    # estimators
    "xi": Spec("float", none=True, **NONNEG), "eps_scale": Spec("float", **POS),
    "unroll": Spec("str", choices=("optimizer", "sgd")),
    "hvp": Spec("str", choices=("finite-difference", "exact")), "unroll_clip": Spec("bool"),
    "tau_max": Spec("float", **POS), "tau_min": Spec("float", **POS),
    "temp_init": Spec("float", **POS), "temp_min": Spec("float", **NONNEG),
    "temp_schedule": Spec("str", choices=("linear", "cosine")),
    "resource_weight": Spec("float", also=("none", "mild", "moderate", "aggressive"), **NONNEG),
    "resource": Spec("str", choices=("all", "params", "flops", "mac")),
    "rule": Spec("str", choices=("darts", "snas")),
    "inactive_gradient": Spec("bool"), "baseline": Spec("bool"),
    "baseline_coef": Spec("float", lo=0.0, hi=1.0, lo_open=True),
    "ema_coef": Spec("float", lo=0.0, hi=1.0, lo_open=True),
    "samples": Spec("int", lo=1, hi=1024), "likelihood": Spec("str", choices=("batch", "mean")),
    "form": Spec("str", choices=("paper", "advantagenas")),
    "selection": Spec("str", choices=("li-talwalkar", "one-batch")),
    "gates": Spec("str", choices=("one", "both")),
    "estimate": Spec("str", choices=("taylor", "exact")),
    "candidates": Spec("int", lo=1, hi=100_000), "grad_bound": Spec("float", **POS),
    "wipeout": Spec("bool"), "entropic": Spec("float", **NONNEG),
    "partial_channels": Spec("int", lo=1, hi=64),
    "stage_depths": Spec("ints", none=True, lo=1, hi=MAX_DEPTH),
    "keep": Spec("ints", none=True, lo=1),
    "skip_dropout": Spec("floats", lo=0.0, hi=0.99), "stage_warmup": Spec("float", lo=0.0,
                                                                           hi=0.99),
    "dropout_decay": Spec("float", **NONNEG), "max_skip": Spec("int", none=True, lo=0),
    # parts any strategy takes (archgrad.addons)
    "beta_decay": Spec("float", **NONNEG), "beta_decay_span": Spec("int", lo=1),
    "zero_one": Spec("float", **NONNEG),
    "perturb": Spec("str", choices=("none", "random", "adversarial")),
    "perturb_eps": Spec("float", lo=0.0, hi=1.0), "perturb_eps_min": Spec("float", lo=0.0, hi=1.0),
    "perturb_steps": Spec("int", lo=1, hi=100), "aux_skip": Spec("float", **NONNEG),
    "lambda_reg": Spec("float", **NONNEG), "lambda_eps": Spec("float", **POS),
    "oles": Spec("float", lo=-1.0, hi=1.0), "oles_window": Spec("int", lo=1),
    "oles_match": Spec("str", choices=("official", "paper")),
    "concentration_reg": Spec("str", choices=("l2", "kl")), "reg_scale": Spec("float", **NONNEG),
    "stage_channels": Spec("ints", lo=1, hi=64),
    "hessian_every": Spec("int", lo=0), "hessian_iters": Spec("int", lo=1, hi=1000),
    "early_stop": Spec("str", choices=("none", "eigenvalue", "skips", "ada")),
    "es_window": Spec("int", lo=1, hi=1000), "es_factor": Spec("float", lo=1.0, lo_open=True),
    "es_start": Spec("int", lo=0), "es_skips": Spec("int", lo=1),
    "ada_factor": Spec("float", lo=1.0, lo_open=True),
    "ada_max_weight_decay": Spec("float", lo=0.0, lo_open=True),
    # spaces
    "C": Spec("int", lo=1), "N": Spec("int", lo=1, hi=MAX_DEPTH),
    "layers": Spec("int", lo=1, hi=MAX_DEPTH),
    "steps": Spec("int", lo=1, hi=32), "multiplier": Spec("int", lo=1, hi=32),
    "stem_multiplier": Spec("int", lo=1, hi=64), "num_classes": Spec("int", none=True, lo=1,
                                                                     hi=1_000_000),
    "in_channels": Spec("int", lo=1, hi=4096), "ops": Spec("strs", none=True),
    "robust_space": Spec("str", none=True, choices=("s1", "s2", "s3", "s4")),
    "include_none": Spec("bool"), "affine": Spec("bool"), "auxiliary_skip": Spec("bool"),
    "track_running_stats": Spec("bool"),
    "fused": Spec("bool"), "channels_last": Spec("bool", none=True),
    "network": Spec("str", choices=("cifar", "imagenet")),
    "eval_C": Spec("int", none=True, lo=1),
    "eval_layers": Spec("int", none=True, lo=1, hi=MAX_DEPTH),
    "auxiliary": Spec("bool"), "edges": Spec("int", lo=1, hi=10_000),
    "kernel": Spec("int", lo=1, hi=64), "stride": Spec("int", lo=1, hi=64),
    "image_size": Spec("int", lo=1, hi=4096), "head_kernel": Spec("int", none=True, lo=1),
    "vocab_size": Spec("int", lo=2, hi=10_000_000), "nodes": Spec("int", lo=1, hi=32),
    **{k: Spec("float", lo=0.0, hi=0.999999) for k in (
        "dropout", "dropouth", "dropoutx", "dropouti", "dropoute", "eval_dropoute")},
    "ninp": Spec("int", lo=1, hi=1_000_000), "nhid": Spec("int", lo=1, hi=1_000_000),
    "eval_ninp": Spec("int", lo=1, hi=1_000_000), "eval_nhid": Spec("int", lo=1, hi=1_000_000),
    "steps_per_epoch": Spec("int", lo=1, hi=10_000_000), "test_size": Spec("int", lo=1,
                                                                           hi=10_000_000),
}


def infer(default: Any) -> Spec:
    """The spec of an option from its default, where :data:`KNOWN` has none."""
    if isinstance(default, bool):
        return Spec("bool")
    if isinstance(default, int):
        return Spec("int")
    if isinstance(default, float):
        return Spec("float")
    if isinstance(default, str):
        return Spec("str")
    if isinstance(default, (list, tuple)):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in default):
            return Spec("ints")
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in default):
            return Spec("floats")
        return Spec("strs")
    return Spec("any", none=True)


def _fail(owner: str, name: str, spec: Spec, value) -> ArchgradError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ArchgradError(f"{owner} option {name} must be {spec.describe()}, got {shown}")


def _number(owner, name, spec, v, integer: bool):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(owner, name, spec, v)
    if isinstance(v, float) and not math.isfinite(v):
        raise _fail(owner, name, spec, v)
    if integer:
        if isinstance(v, float):
            if not v.is_integer():
                raise _fail(owner, name, spec, v)
            v = int(v)
    if spec.lo is not None and (v < spec.lo or (spec.lo_open and v <= spec.lo)):
        raise _fail(owner, name, spec, v)
    if spec.hi is not None and v > spec.hi:
        raise _fail(owner, name, spec, v)
    return v


def coerce(owner: str, name: str, value: Any, spec: Spec) -> Any:
    """``value`` checked against ``spec`` (and normalised: ints, tuples); raises a one-line
    :class:`ArchgradError` naming ``owner`` and the option."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")
                         and spec.kind != "str"):
        if spec.none:
            return None
        raise _fail(owner, name, spec, value)
    k = spec.kind
    if k == "any":
        return value
    if k == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise _fail(owner, name, spec, value)
    if k in ("float", "int"):
        if isinstance(value, str) and value in spec.also:
            return value
        return _number(owner, name, spec, value, k == "int")
    if k == "str":
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise _fail(owner, name, spec, value)
        return value
    # sequences
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
        if k in ("ints", "floats"):
            try:
                value = [float(p) for p in value]
            except ValueError:
                raise _fail(owner, name, spec, value) from None
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise _fail(owner, name, spec, value)
    if spec.length is not None and len(value) != spec.length:
        raise _fail(owner, name, spec, value)
    if k == "strs":
        if not all(isinstance(x, str) for x in value):
            raise _fail(owner, name, spec, value)
        return tuple(value)
    item = Spec("int" if k == "ints" else "float", lo=spec.lo, hi=spec.hi, lo_open=spec.lo_open)
    try:
        return tuple(_number(owner, name, item, x, k == "ints") for x in value)
    except ArchgradError:
        raise _fail(owner, name, spec, value) from None


def spec_for(name: str, default: Any, declared: Spec | None = None) -> Spec:
    return declared or KNOWN.get(name) or infer(default)


def check_options(owner: str, options: dict, defaults: dict,
                  declared: dict[str, Spec] | None = None) -> dict:
    """Every option of ``options`` checked against its spec; returns the normalised values."""
    declared = declared or {}
    return {k: coerce(owner, k, v, spec_for(k, defaults.get(k), declared.get(k)))
            for k, v in options.items()}


__all__ = ["Spec", "KNOWN", "coerce", "check_options", "spec_for", "infer"]
