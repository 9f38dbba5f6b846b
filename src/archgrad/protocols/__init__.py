"""Named experiment protocols and configuration files (TOML).

A protocol is a readable file a user can also write: the settings of a search (space and its
options, dataset, epochs, batch size, every strategy option), per-strategy settings, the
strategies compared, the seeds, how the final architecture is derived, the scales it runs at and
the published figures with their source. ``archgrad search --config FILE`` takes the same format
(one strategy's settings), and ``archgrad train --config FILE`` its ``[train]`` table.

Layout::

    name = "advantagenas-nb201"            # protocols only
    title = "..."
    source = "paper, table; official code"
    strategies = ["reinforce", "advantage"]  # protocols: the strategies compared
    seeds = [0, 1, 2]
    derive = ["argmax", "process-best"]      # the derivations the report shows

    [search]          # space, strategy, dataset, epochs, batch_size, seed, subset, eval_every,
    space = "nb201"   # data_dir, device, amp ("bf16" / "fp16"), sync_bn (true / false)
    [space]           # options of the space
    [options]         # options of every strategy (lr, arch_lr, warmup_epochs ...)
    [strategy.gdas]   # options of one strategy (and its own search/space settings under
                      # strategy.gdas.search / strategy.gdas.space)
    [scale.proxy]     # a scale: overrides of search / space / options / strategy, and a note
    [published]       # source = "...", metric = "cifar10"; [published.argmax] reinforce = 93.01
    [train]           # for `archgrad train --config`: space, genotype, dataset, recipe options

Every key is checked: an unknown key or a value of the wrong type gives one line naming the file
and the key.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ArchgradError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SEARCH_KEYS = {"space": str, "strategy": str, "dataset": str, "epochs": int, "batch_size": int,
               "seed": int, "subset": int, "eval_every": int, "data_dir": str, "device": str,
               "amp": str, "sync_bn": bool}
TOP_KEYS = {"name": str, "title": str, "source": str, "description": str, "strategies": list,
            "seeds": list, "derive": list, "search": dict, "space": dict, "options": dict,
            "strategy": dict, "scale": dict, "published": dict, "train": dict,
            "retrain": dict, "labels": dict}
SCALES = ("full", "proxy", "tiny")
_KIND = {int: "an integer", str: "a string", bool: "true or false"}
DERIVES = ("argmax", "process-best", "process-best-mean")


@dataclass
class Protocol:
    """A loaded protocol (or configuration file)."""

    path: str
    name: str
    title: str = ""
    source: str = ""
    description: str = ""
    strategies: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    derive: list[str] = field(default_factory=lambda: ["argmax"])
    search: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    strategy: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    retrain: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)

    # -- resolution --------------------------------------------------------------------------
    def at_scale(self, scale: str) -> "Protocol":
        """This protocol with a scale's overrides applied (``full``: as written)."""
        if scale not in SCALES:
            raise ArchgradError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if scale == "full":
            return self
        if scale not in self.scale:
            raise ArchgradError(f"protocol '{self.name}' has no '{scale}' scale; it has "
                                f"{', '.join(['full'] + sorted(self.scale))}")
        out = copy.deepcopy(self)
        over = self.scale[scale]
        for part in ("search", "space", "options", "retrain"):
            getattr(out, part).update(over.get(part, {}))
        for name, sub in over.get("strategy", {}).items():
            _merge(out.strategy.setdefault(name, {}), sub)
        for k in ("seeds", "strategies"):
            if k in over:
                setattr(out, k, list(over[k]))
        return out

    def scale_note(self, scale: str) -> str:
        return "" if scale == "full" else str(self.scale.get(scale, {}).get("note", ""))

    def search_kwargs(self, strategy: str | None = None, seed: int | None = None) -> dict:
        """Keyword arguments of :func:`archgrad.search` for one strategy (and seed)."""
        s = dict(self.search)
        name = strategy or s.get("strategy") or (self.strategies[0] if len(self.strategies) == 1
                                                 else None)
        if name is None and self.strategies:
            raise ArchgradError(f"{self.path} holds several strategies "
                                f"({', '.join(self.strategies)}); choose one with --strategy")
        name = name or "darts"
        if self.strategies and name not in self.strategies and name not in self.strategy:
            raise ArchgradError(f"{self.path}: strategy '{name}' is not one of this file's "
                                f"({', '.join(self.strategies)})")
        per = self.strategy.get(name, {})
        s.update(per.get("search", {}))
        s["strategy"] = name
        if seed is not None:
            s["seed"] = seed
        space_opts = dict(self.space)
        space_opts.update(per.get("space", {}))
        # the shared options where this strategy takes them (a protocol's [options] serve
        # strategies with and without, e.g., architecture parameters); its own all of them
        from ..methods import accepted_options
        takes = set(accepted_options(name))
        opts = {k: v for k, v in self.options.items() if k in takes or k.startswith("strategy.")
                or k.startswith("space.")}
        opts.update({k: v for k, v in per.items() if k not in ("search", "space")})
        s["space_options"] = space_opts
        s["strategy_options"] = opts
        return s


    def retrain_kwargs(self) -> dict:
        """The ``[retrain]`` table: options of :func:`archgrad.train` for every found
        architecture (a recipe's and the evaluation network's); empty: no retraining."""
        return dict(self.retrain)


def _merge(into: dict, over: dict) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _check(path: str, data: dict) -> None:
    def fail(key, msg):
        raise ArchgradError(f"{path}: {key} {msg}")

    for k, v in data.items():
        if k not in TOP_KEYS:
            fail(k, f"is not a known key (known: {', '.join(sorted(TOP_KEYS))})")
        if not isinstance(v, TOP_KEYS[k]):
            fail(k, f"must be a {TOP_KEYS[k].__name__}, got {type(v).__name__}")

    def search_table(prefix, table):
        for k, v in table.items():
            if k not in SEARCH_KEYS:
                fail(f"{prefix}.{k}", f"is not a search setting ({', '.join(SEARCH_KEYS)})")
            t = SEARCH_KEYS[k]
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                fail(f"{prefix}.{k}", f"must be {_KIND[t]}, got {v!r}")

    search_table("search", data.get("search", {}))
    for k in ("space", "options"):
        for key, v in data.get(k, {}).items():
            if isinstance(v, dict):
                fail(f"{k}.{key}", "must be a value, not a table")
    for name, sub in data.get("strategy", {}).items():
        if not isinstance(sub, dict):
            fail(f"strategy.{name}", "must be a table of that strategy's options")
        search_table(f"strategy.{name}.search", sub.get("search", {}))
    for name, sc in data.get("scale", {}).items():
        if name not in ("proxy", "tiny"):
            fail(f"scale.{name}", "is not a scale (proxy, tiny)")
        if not isinstance(sc, dict):
            fail(f"scale.{name}", "must be a table")
        for k, v in sc.items():
            if k not in ("note", "search", "space", "options", "strategy", "seeds",
                         "strategies", "retrain"):
                fail(f"scale.{name}.{k}", "is not a scale setting (note, search, space, "
                                         "options, strategy, seeds, strategies, retrain)")
        search_table(f"scale.{name}.search", sc.get("search", {}))
    for k in ("seeds",):
        for s in data.get(k, []):
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                fail(k, f"must list integers >= 0, got {s!r}")
    for k in ("seeds", "strategies"):
        items = data.get(k)
        if items is not None and not items:
            fail(k, "is empty: list at least one (or leave the key out)")
        for s in items or []:
            if isinstance(s, (int, str)) and items.count(s) > 1:
                fail(k, f"lists {s!r} twice")
    for d in data.get("derive", []):
        if d not in DERIVES:
            fail("derive", f"must list derivations among {', '.join(DERIVES)}, got {d!r}")
    for s in data.get("strategies", []):
        if not isinstance(s, str):
            fail("strategies", f"must list strategy names, got {s!r}")
    # a file's one search beside its grid: it must be one of the grid's, or a sweep of the
    # file would silently run something else than `search --config` does
    search = data.get("search", {})
    if data.get("strategies") and search.get("strategy", data["strategies"][0]) \
            not in data["strategies"]:
        fail("search.strategy", f"{search['strategy']!r} is not among strategies "
                                f"({', '.join(data['strategies'])})")
    if data.get("seeds") and search.get("seed", data["seeds"][0]) not in data["seeds"]:
        fail("search.seed", f"{search['seed']!r} is not among seeds {data['seeds']}")
    for k, v in data.get("labels", {}).items():
        if not isinstance(v, str):
            fail(f"labels.{k}", f"must be a string (the name the report shows), got {v!r}")
    # [published]: source and metric (text), and per derivation (argmax, ...) or per split
    # (valid, test) a table of the published figure of each strategy
    for k, v in data.get("published", {}).items():
        if k in ("source", "metric"):
            if not isinstance(v, str):
                fail(f"published.{k}", f"must be a string, got {v!r}")
        elif k in DERIVES + ("valid", "test"):
            if not isinstance(v, dict):
                fail(f"published.{k}", f"must be a table of strategy = figure, got {v!r}")
            for name, x in v.items():
                if not isinstance(x, (int, float)) or isinstance(x, bool):
                    fail(f"published.{k}.{name}", f"must be a number, got {x!r}")
        else:
            fail(f"published.{k}", f"is not a published setting (source, metric, "
                                   f"{', '.join(DERIVES)}, valid, test)")


def _check_names(p: Protocol) -> None:
    """Registered names; every shared option taken by at least one of the strategies; every
    strategy's settings valid (at every scale)."""
    from ..methods import STRATEGIES, accepted_options
    from ..spaces import SPACES
    try:
        for s in p.strategies:
            STRATEGIES.get(s)
        for s in p.strategy:
            STRATEGIES.get(s)
        space = SPACES.get(p.search.get("space", "nb201"))
        names = p.strategies or [p.search.get("strategy", "darts")]
        takes = set().union(*(accepted_options(s) for s in names)) | set(space.options)
        for k in p.options:
            if k.split(".", 1)[-1] not in takes:
                raise ArchgradError(f"options.{k} is not an option of "
                                    f"{', '.join(names)} or the space")
    except ArchgradError as e:
        raise ArchgradError(f"{p.path}: {e}") from None
    from ..core.options import check_options
    from ..engine.train import RECIPE_SPECS, recipe_keys
    from ..search import check_search_kwargs
    if p.train:  # checked whichever command reads the file
        _check_train(p.path, {"space": p.search.get("space", "nb201"), **p.train})
    for scale in ["full"] + sorted(p.scale):
        q = p.at_scale(scale)
        takes = set(recipe_keys(space)) | set(space.options)
        where = f"{p.path}" + (f" (scale {scale})" if scale != "full" else "")
        for k, v in q.retrain.items():
            if k not in takes:
                raise ArchgradError(f"{where}: retrain.{k} is not a training option of space "
                                    f"'{space.name}' ({', '.join(sorted(takes))})")
            if k in RECIPE_SPECS:
                try:
                    check_options("training", {k: v}, {}, RECIPE_SPECS)
                except ArchgradError as e:
                    raise ArchgradError(f"{where}: retrain.{k}: {e}") from None
        for s in (q.strategies or [None]):
            try:
                check_search_kwargs(**q.search_kwargs(s))
            except ArchgradError as e:
                where = f"{p.path}" + (f" (scale {scale})" if scale != "full" else "")
                raise ArchgradError(f"{where}: {e}") from None


def source_text(source: str | Path) -> tuple[bytes, str]:
    """The TOML text of a shipped protocol or configuration (by name) or of a file (by path),
    and how to name it in messages."""
    src = str(source)
    path = Path(src)
    if path.suffix == ".toml" or path.is_file() or "/" in src:
        if not path.is_file():
            raise ArchgradError(f"no configuration file at {path}")
        return path.read_bytes(), str(path)
    for package, kind in ((__name__, "protocol"), ("archgrad.configs", "configuration")):
        try:
            return (resources.files(package).joinpath(f"{src}.toml").read_bytes(),
                    f"{kind} '{src}'")
        except (FileNotFoundError, OSError):
            continue
    from ..errors import UnknownNameError
    raise UnknownNameError("protocol or configuration", src, names() + config_names())


def load(source: str | Path) -> Protocol:
    """A shipped protocol by name, or a TOML file by path."""
    text, where = source_text(source)
    path = Path(str(source))
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ArchgradError(f"{where} is not valid TOML ({e})") from None
    _check(where, data)
    if "seeds" not in data and "seed" in data.get("search", {}):
        data["seeds"] = [data["search"]["seed"]]   # a file of one search: its own seed
    p = Protocol(path=where, name=data.get("name", path.stem),
                 **{k: v for k, v in data.items() if k != "name"})
    _check_names(p)
    return p


def names() -> list[str]:
    """The shipped paper protocols."""
    return sorted(f.name[:-5] for f in resources.files(__name__).iterdir()
                  if f.name.endswith(".toml"))


def config_names() -> list[str]:
    """The shipped configuration files (``quickstart`` ...)."""
    return sorted(f.name[:-5] for f in resources.files("archgrad.configs").iterdir()
                  if f.name.endswith(".toml"))


def config_search_kwargs(source: str, strategy: str | None = None) -> dict:
    """``archgrad search --config``: the search settings of a file or protocol for one strategy,
    as keyword arguments of ``search`` (``space_options`` / ``strategy_options`` separate)."""
    p = load(source)
    return p.search_kwargs(strategy)


def config_train_kwargs(source: str) -> dict:
    """``archgrad train --config``: the ``[train]`` table (space, genotype, dataset, seed and the
    recipe) with the ``[space]`` options."""
    p = load(source)
    if not p.train:
        raise ArchgradError(f"{p.path} has no [train] table")
    out = dict(p.train)
    out.setdefault("space", p.search.get("space", "nb201"))
    _check_train(p.path, out)
    return {"train": out, "space_options": dict(p.space)}


TRAIN_KEYS = {"space": str, "genotype": str, "dataset": str, "data_dir": str, "device": str,
              "seed": int, "subset": int, "eval_every": int}


def _check_train(path: str, table: dict) -> None:
    """The ``[train]`` table: its settings' types, and every other key a training option (or
    an evaluation-network option) of its space, in range."""
    from ..core.options import check_options
    from ..engine.train import RECIPE_SPECS, recipe_keys
    from ..spaces import SPACES
    for k, v in table.items():
        t = TRAIN_KEYS.get(k)
        if t is not None and (not isinstance(v, t) or (t is int and isinstance(v, bool))):
            raise ArchgradError(f"{path}: train.{k} must be {_KIND[t]}, got {v!r}")
    try:
        space = SPACES.get(table["space"])
    except ArchgradError as e:
        raise ArchgradError(f"{path}: train.space: {e}") from None
    takes = set(recipe_keys(space)) | set(space.options)
    for k, v in table.items():
        if k in TRAIN_KEYS:
            continue
        if k not in takes:
            raise ArchgradError(f"{path}: train.{k} is not a training option of space "
                                f"'{space.name}' ({', '.join(sorted(takes))}, "
                                f"{', '.join(TRAIN_KEYS)})")
        if k in RECIPE_SPECS:
            try:
                check_options("training", {k: v}, {}, RECIPE_SPECS)
            except ArchgradError as e:
                raise ArchgradError(f"{path}: train.{k}: {e}") from None


__all__ = ["Protocol", "load", "names", "config_search_kwargs", "config_train_kwargs",
           "SCALES"]
