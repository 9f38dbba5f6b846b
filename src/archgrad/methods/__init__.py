"""Named search strategies: small aliases that pick an estimator, an update rule and a schedule.

``make_strategy(name, **options)`` builds one; ``STRATEGIES`` lists them. Options common to every
strategy configure the weight optimizer (``lr``, ``lr_min``, ``momentum``, ``weight_decay``,
``grad_clip``, ``nesterov``), the schedule (``warmup_epochs``, ``arch_every``, ``data_split``)
and the derivation (``derive``: "argmax", "process-best" or "process-best-mean";
``exclude_none``: never derive the zero op). Strategies with Adam on their architecture take
``arch_lr``, ``arch_betas``, ``arch_weight_decay``, ``arch_grad_clip``, ``arch_lr_schedule`` and
``init_scale``.

Each registration names its defaults where they differ from DARTS's and the source of every
setting (``sources``); :func:`defaults_table` renders them (``docs/defaults.md``), and a test
holds them against the papers.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..core.addons import ADDON_DEFAULTS, ADDON_HELP, build_addons
from ..core.arch import Softmax
from ..core.selection import PT_DEFAULTS, PT_HELP
from ..core.strategy import AdamUpdate, Strategy, WeightOptim
from ..errors import ArchgradError
from ..registry import Registry, first_paragraph

COMMON_OPTIONS = {
    "lr": "initial learning rate of the weights (SGD)",
    "lr_min": "final learning rate of the cosine schedule",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay of the weights",
    "grad_clip": "gradient-norm clip of the weights (0 or None: off)",
    "nesterov": "Nesterov momentum",
    "optimizer": "weight optimizer: 'sgd' (DARTS) or 'adam'",
    "lr_epochs": "epochs the learning-rate cosine spans (default: the search's)",
    "warmup_epochs": "epochs that train the weights only, architecture frozen (a fraction "
                     "below 1: that share of the epochs)",
    "arch_every": "an architecture step every N iterations (ProxylessNAS: 5)",
    "data_split": "'halves' (weights on one half of the training data, architecture on the "
                  "other), 'all' (single level: all of it trains both, on the same batch) or "
                  "'all-resampled' (single level, the architecture on a batch of its own from "
                  "a second shuffled pass: the GAEA release's ERM)",
    "derive": "final architecture: 'argmax' of the distribution, 'process-best' (the sampled "
              "architecture with the lowest single-minibatch validation loss, AdvantageNAS's "
              "official code), 'process-best-mean' (the lowest mean over its samples), "
              "'best-valid' or 'perturbation' (DARTS-PT's selection on the supernet)",
    "exclude_none": "never derive the zero op",
    **ADDON_HELP,
    **PT_HELP,
}

#: Adam on the architecture's logits, DARTS's settings (§3.1.2; cnn/train_search.py)
ADAM_OPTIONS: dict[str, Any] = {
    "arch_lr": 3e-4, "arch_betas": (0.5, 0.999), "arch_weight_decay": 1e-3,
    "arch_grad_clip": None, "arch_lr_schedule": "constant", "init_scale": 1e-3,
}
ADAM_HELP = {
    "arch_lr": "architecture learning rate",
    "arch_betas": "Adam betas of the architecture optimizer",
    "arch_weight_decay": "architecture weight decay",
    "arch_grad_clip": "clip the architecture gradient's norm (None: off)",
    "arch_lr_schedule": "'constant' or 'cosine' (to 0 over the epochs with architecture steps)",
    "init_scale": "initial logits: init_scale * N(0, 1) (0: uniform)",
}
#: settings of the search itself that a strategy may default (PC-DARTS: batch 256)
SEARCH_DEFAULTS = ("batch_size", "epochs")


@dataclass(frozen=True)
class StrategyEntry:
    factory: Callable[..., Strategy]
    family: str
    accepts: tuple[str, ...]
    doc: str
    defaults: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    #: help text per strategy-specific option
    help: dict = field(default_factory=dict)
    #: steps its architecture with Adam (takes the ``arch_*`` options)
    adam: bool = False


STRATEGIES: Registry[StrategyEntry] = Registry("strategy")


def register(name: str, *, family: str, adam: bool = False, accepts: tuple[str, ...] = (),
             defaults: dict | None = None, sources: dict | None = None,
             help: dict | None = None):
    """Register a factory ``(**options) -> Strategy`` under ``name``. ``adam``: it builds its
    update with :func:`adam_update` and takes the ``arch_*`` options. ``defaults``: options set
    unless the user sets them (common ones such as ``lr``, and ``batch_size`` / ``epochs`` of
    the search). ``sources``: setting -> where its default comes from (``"*"``: the rest)."""

    def deco(fn):
        own = tuple(p for p, v in inspect.signature(fn).parameters.items()
                    if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD))
        doc = first_paragraph(fn.__doc__)
        extra = tuple(ADAM_OPTIONS) if adam else ()
        STRATEGIES.register(name, StrategyEntry(fn, family, own + accepts + extra, doc,
                                                dict(defaults or {}), dict(sources or {}),
                                                dict(help or {}), adam), help=doc)
        return fn

    return deco


def adam_update(kw: dict, parameterization=Softmax, **overrides) -> AdamUpdate:
    """Pop the ``arch_*`` options from ``kw`` and build Adam on the logits."""
    o = {k: kw.pop(k, overrides.get(k, v)) for k, v in ADAM_OPTIONS.items()}
    return AdamUpdate(o["arch_lr"], o["arch_betas"], o["arch_weight_decay"],
                      parameterization(o["init_scale"]), grad_clip=o["arch_grad_clip"],
                      lr_schedule=o["arch_lr_schedule"])


def common(kw: dict) -> dict:
    """Split the common options off into ``Strategy`` keyword arguments."""
    kw = dict(kw)
    w = {f.name: kw.pop(f.name) for f in fields(WeightOptim) if f.name in kw}
    weights = WeightOptim(**w)
    out: dict[str, Any] = {"weights": weights}
    if "warmup_epochs" in kw:
        w = kw.pop("warmup_epochs")
        out["warmup_epochs"] = w if isinstance(w, float) and w < 1 else w
    for k in ("derive", "arch_every", "data_split") + SEARCH_DEFAULTS:
        if k in kw:
            out[k] = kw.pop(k)
    if "exclude_none" in kw:
        out.setdefault("derive_options", {})["exclude_none"] = bool(kw.pop("exclude_none"))
    out["pt_options"] = {**PT_DEFAULTS, **{k: kw.pop(k) for k in list(kw) if k in PT_DEFAULTS}}
    addon_opts = {k: kw.pop(k) for k in list(kw) if k in ADDON_DEFAULTS}
    out["addons"] = build_addons(addon_opts)
    if kw:
        raise ArchgradError(f"unexpected strategy option(s): {', '.join(sorted(kw))}")
    return out


def accepted_options(name: str) -> list[str]:
    e = STRATEGIES.get(name)
    return sorted(set(e.accepts) | set(COMMON_OPTIONS))


def option_help(name: str) -> dict[str, dict[str, Any]]:
    """Per option ``name`` accepts: its help text, default and accepted values."""
    from ..core.options import spec_for
    e = STRATEGIES.get(name)
    defaults = option_defaults(name)
    out = {}
    for k in accepted_options(name):
        out[k] = {"help": e.help.get(k) or COMMON_OPTIONS.get(k) or ADAM_HELP.get(k) or "",
                  "default": defaults.get(k),
                  "accepts": spec_for(k, defaults.get(k)).describe()}
    return out


#: defaults of the options common to every strategy (DARTS's)
COMMON_DEFAULTS = {**{f.name: f.default for f in fields(WeightOptim)}, "warmup_epochs": 0,
                   "arch_every": 1, "data_split": None, "derive": "argmax",
                   "exclude_none": False, **ADDON_DEFAULTS, **PT_DEFAULTS}


def option_defaults(name: str) -> dict[str, Any]:
    """Every option ``name`` accepts with its default value."""
    e = STRATEGIES.get(name)
    out = dict(COMMON_DEFAULTS)
    if e.adam:
        out.update(ADAM_OPTIONS)
    for p, v in inspect.signature(e.factory).parameters.items():
        if v.default is not inspect.Parameter.empty:
            out[p] = v.default
    out.update({k: v for k, v in e.defaults.items() if k not in SEARCH_DEFAULTS})
    return out


def make_strategy(name: str, **options) -> Strategy:
    """Build the registered strategy ``name`` with paper defaults overridden by ``options``.
    Every option is checked against its type and range first (one-line errors)."""
    from ..core.options import check_options
    entry = STRATEGIES.get(name)
    accepted = set(entry.accepts) | set(COMMON_OPTIONS)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ArchgradError(
            f"strategy '{name}' has no option {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(accepted))}")
    options = check_options(f"strategy '{name}'", options, option_defaults(name))
    if "tau_max" in options or "tau_min" in options or "temp_init" in options \
            or "temp_min" in options:
        d = option_defaults(name)
        for hi, lo in (("tau_max", "tau_min"), ("temp_init", "temp_min")):
            if hi in d and options.get(lo, d[lo]) > options.get(hi, d[hi]):
                raise ArchgradError(f"strategy '{name}': {lo} must not exceed {hi}")
    merged = {**entry.defaults, **options}
    try:
        return entry.factory(**merged)
    except (TypeError, ValueError) as e:  # a value of the wrong kind reaching a constructor
        if isinstance(e, ArchgradError):
            raise
        raise ArchgradError(f"strategy '{name}': invalid option value ({e})") from None


def strategy_settings(name: str, **options) -> dict[str, Any]:
    """Every setting of ``name`` as it would run, with ``options`` applied."""
    return make_strategy(name, **options).settings()


def setting_source(name: str, key: str) -> str:
    """Where the default of setting ``key`` of strategy ``name`` comes from."""
    e = STRATEGIES.get(name)
    src = e.sources.get(key)
    if src is None:
        for group, keys in _GROUPS.items():
            if key in keys and group in e.sources:
                src = e.sources[group]
                break
    return src if src is not None else e.sources.get("*", "")


#: groups of settings that share one source entry ("weights": "DARTS §3.1.2" ...)
_GROUPS = {"weights": ("optimizer", "lr", "lr_min", "momentum", "nesterov", "weight_decay",
                       "grad_clip", "lr_epochs"),
           "arch": ("arch_optimizer", "arch_lr", "arch_betas", "arch_weight_decay",
                    "arch_grad_clip", "arch_lr_schedule", "init", "arch_eps"),
           "schedule": ("bilevel", "data_split", "warmup_epochs", "arch_every", "arch_first",
                        "batch_size", "epochs")}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if v is None:
        return "–"
    return str(v)


def defaults_table() -> str:
    """Markdown: every strategy's settings with the source of each (docs/defaults.md)."""
    lines = ["# Strategy defaults and their sources", "",
             "Generated from the registry by `python -m archgrad.methods`; a test keeps this "
             "file current and holds the values against a table typed from the papers "
             "(`tests/test_fidelity.py`). `–`: off / not used. Where `batch_size` or `epochs` "
             "is `–` the search takes the space's batch (64) and 50 epochs. On the small "
             "bundled datasets (`digits`, `synthetic`) a quick budget replaces the strategy's "
             "batch size and epochs (batch 64; 10 and 2 epochs). `--set KEY=VALUE` overrides "
             "any setting.", ""]
    for name in STRATEGIES:
        e = STRATEGIES.get(name)
        st = make_strategy(name)
        settings = st.settings()
        lines += [f"## `{name}`", "", e.doc, "",
                  f"Supernet evaluated as: {st.estimator.describe_eval()}.", "",
                  "| settings | source |", "| --- | --- |"]
        rows: dict[str, list[str]] = {}
        for k, v in settings.items():
            rows.setdefault(setting_source(name, k), []).append(f"`{k}` {_fmt(v)}")
        for src, items in rows.items():
            lines.append(f"| {', '.join(items)} | {src} |")
        lines.append("")
    return "\n".join(lines + space_defaults_table())


def space_defaults_table() -> list[str]:
    """Markdown lines: the defaults a space gives the strategies run on it (its recipe),
    applied where a strategy takes the option and the user has not set it."""
    from ..spaces import SPACES
    lines = ["# Defaults a space gives every strategy run on it", "",
             "Applied where the strategy takes the option and it is not set (`--set` wins); "
             "`arch_*`: only strategies that step their architecture with Adam.", ""]
    for name in SPACES:
        cls = SPACES.get(name)
        items = {**cls.strategy_defaults, **cls.arch_defaults}
        if not items:
            continue
        lines += [f"## space `{name}`", "", "| settings | source |", "| --- | --- |"]
        rows: dict[str, list[str]] = {}
        for k, v in items.items():
            src = cls.defaults_sources.get(k)
            if src is None:
                group = next((g for g, keys in _GROUPS.items() if k in keys or
                              (g == "arch" and k == "init_scale")), None)
                src = cls.defaults_sources.get(group, "")
            rows.setdefault(src, []).append(f"`{k}` {_fmt(v)}")
        for src, its in rows.items():
            lines.append(f"| {', '.join(its)} | {src} |")
        lines.append("")
    return lines


# importing the method modules registers them
from . import (advantage, darts, gaea, gdas, idarts, nasp, parsec, pcdarts,  # noqa: E402,F401,I001
               pdarts, proxyless, random_ws, reinforce, snas, xnas)
from . import (beta_darts, darts_es, darts_minus, darts_pt, drnas, fairdarts,  # noqa: E402,F401,I001
               lambda_darts, oles, sdarts)

__all__ = ["STRATEGIES", "make_strategy", "register", "common", "accepted_options",
           "COMMON_OPTIONS", "ADAM_OPTIONS", "adam_update", "strategy_settings",
           "setting_source", "defaults_table", "option_help", "option_defaults"]
