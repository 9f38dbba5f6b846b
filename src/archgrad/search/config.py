"""A search's configuration and its checks: routing options to the space or the strategy, the
device and the dataset, and the checks of a run directory's config.json."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core.strategy import NoUpdate, Strategy
from ..data import DATASETS
from ..errors import ArchgradError
from ..methods import STRATEGIES, accepted_options, make_strategy
from ..runs.rundir import check_seed, config_digest, read_json
from ..spaces import SPACES, Genotype, get_space

DEFAULT_EPOCHS = 50  # DARTS's search budget


BN_BATCHES = 10  # training batches that recalibrate BN statistics for a derived architecture


@dataclass
class SearchConfig:
    space: str = "nb201"
    strategy: str = "darts"
    dataset: str | None = "digits"
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    subset: int | None = None
    eval_every: int = 1
    space_options: dict = field(default_factory=dict)
    strategy_options: dict = field(default_factory=dict)
    #: mixed precision: None (fp32), "bf16" or "fp16" (with a loss scaler)
    amp: str | None = None
    #: under torchrun: batch norm with the statistics of the whole global batch (SyncBN)
    sync_bn: bool = False


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SearchResult:
    genotype: Genotype
    history: list[dict]
    final: dict
    config: SearchConfig
    run_dir: Path | None = None
    probs: dict[str, list[list[float]]] = field(default_factory=dict)
    #: True when ``search(resume=...)`` found the run already finished (nothing was run)
    already_finished: bool = False

    def __str__(self) -> str:
        return str(self.genotype)


# --------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArchgradError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArchgradError("device 'cuda' requested but no CUDA device is available; "
                            "use --device cpu")
    return dev


def split_options(space: str, strategy: str, options: dict) -> tuple[dict, dict]:
    """Route flat keyword options to the space or the strategy that accepts them. A name both
    accept goes to the strategy when the strategy only passes it on as the space's default
    (PC-DARTS's ``partial_channels``); otherwise prefix it, ``space.NAME`` or
    ``strategy.NAME``."""
    space_keys = set(SPACES.get(space).options)
    strat_keys = set(accepted_options(strategy))
    passes_on = set(make_strategy(strategy).space_defaults)
    sp, st = {}, {}
    for k, v in options.items():
        if k.startswith("space."):
            name, into, keys, owner = k[6:], sp, space_keys, f"space '{space}'"
        elif k.startswith("strategy."):
            name, into, keys, owner = k[9:], st, strat_keys, f"strategy '{strategy}'"
        else:
            name = k
            if k in space_keys and k in strat_keys:
                if k in passes_on:
                    st[k] = v
                    continue
                raise ArchgradError(
                    f"option {k!r} belongs to both space '{space}' and strategy '{strategy}'; "
                    f"write space.{k}=... or strategy.{k}=...")
            if k in space_keys:
                sp[k] = v
                continue
            if k in strat_keys:
                st[k] = v
                continue
            raise ArchgradError(
                f"unknown option {k!r}; space '{space}' accepts {', '.join(sorted(space_keys))}; "
                f"strategy '{strategy}' accepts {', '.join(sorted(strat_keys))}")
        if name not in keys:
            raise ArchgradError(f"{owner} has no option {name!r}; it accepts "
                                f"{', '.join(sorted(keys))}")
        if name in into and into[name] != v:
            raise ArchgradError(f"option {name} is given twice")
        into[name] = v
    return sp, st


def with_arch_defaults(space_cls, strategy: str, options: dict) -> dict:
    """The space's architecture-optimizer defaults (the toy task: AdvantageNAS's Adam 1e-3)
    for a strategy that steps with Adam, where the user has not set them."""
    out = dict(options)
    if space_cls.arch_defaults and STRATEGIES.get(strategy).adam:
        for k, v in space_cls.arch_defaults.items():
            out.setdefault(k, v)
    takes = set(accepted_options(strategy))
    for k, v in space_cls.strategy_defaults.items():
        if k in takes:
            out.setdefault(k, v)
    return out


def eval_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of the architectures a sampling strategy's supernet is evaluated with:
    fixed per (seed, epoch), apart from the search's own, so evaluating changes nothing."""
    return torch.Generator().manual_seed((seed * 1_000_003 + 7_919 * (epoch + 1)) % 2 ** 62)


def with_space_defaults(space_cls, options: dict, strategy: Strategy) -> dict:
    """The strategy's preferred supernet options (PC-DARTS: partial_channels=4), where the
    space accepts them and the user has not set them."""
    out = dict(options)
    for k, v in strategy.space_defaults.items():
        if k in space_cls.options and k not in out:
            out[k] = v
    return out


def resolve_dataset(space_cls, dataset: str | None) -> str | None:
    """The dataset a search of this space uses: image spaces take a registered image dataset
    (default digits), recurrent spaces a text corpus (default ptb); a space with its own data
    (the toy task) takes none."""
    if space_cls.own_data:
        if dataset not in (None, space_cls.own_data):
            raise ArchgradError(f"space '{space_cls.name}' generates its own data "
                                f"('{space_cls.own_data}'); drop --dataset {dataset}")
        return space_cls.own_data
    want = "text" if space_cls.modality == "sequence" else "image"
    dataset = dataset or ("ptb" if want == "text" else "digits")
    info = DATASETS.get(dataset)
    if info.modality != want:
        fits = ", ".join(n for n in DATASETS if DATASETS.get(n).modality == want)
        takes = "a text corpus" if want == "text" else "images"
        kind = "a text corpus" if info.modality == "text" else "images"
        raise ArchgradError(f"space '{space_cls.name}' takes {takes}; dataset '{dataset}' is "
                            f"{kind} (use one of: {fits})")
    return dataset


# --------------------------------------------------------------------------------------------
_CONFIG_TYPES = {"space": str, "strategy": str, "dataset": (str, type(None)), "epochs": int,
                 "batch_size": int, "seed": int, "device": str,
                 "data_dir": (str, type(None)), "subset": (int, type(None)), "eval_every": int,
                 "space_options": dict, "strategy_options": dict, "amp": (str, type(None)),
                 "sync_bn": bool}


#: settings older run directories may lack (their default applies)
_OPTIONAL = {"amp": None, "sync_bn": False}


#: settings a resumed run may change: where the data and the computation are
_RUN_LOCAL = ("device", "data_dir")


def _digest(cfg: SearchConfig) -> str:
    return config_digest({k: v for k, v in asdict(cfg).items() if k not in _RUN_LOCAL
                          and not (k in _OPTIONAL and v == _OPTIONAL[k])})


def read_run_config(run_dir: Path) -> tuple[SearchConfig, dict]:
    """The configuration of a run directory, read as untrusted input: a one-line error naming
    the file for anything missing, garbled or of the wrong type."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArchgradError(f"cannot resume {run_dir}: no such directory")
    path = run_dir / "config.json"
    if not path.is_file():
        if (run_dir / "train_config.json").is_file():
            raise ArchgradError(f"cannot resume {run_dir} as a search: it is a training run "
                                f"(archgrad train --resume {run_dir})")
        if (run_dir / "sweep.json").is_file():
            raise ArchgradError(f"cannot resume {run_dir} as a search: it is a sweep (run the "
                                f"same archgrad sweep or reproduce command with --out {run_dir} "
                                f"again)")
        raise ArchgradError(f"cannot resume {run_dir}: no config.json there (not a run "
                            f"directory written by archgrad search)")
    try:
        meta = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchgradError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("search"), dict):
        raise ArchgradError(f"{path} has no 'search' section (not a search run's config)")
    fields = meta["search"]
    for k in fields:
        if k not in _CONFIG_TYPES:
            raise ArchgradError(f"{path}: unknown setting search.{k}")
    for k, t in _CONFIG_TYPES.items():
        if k not in fields and k in _OPTIONAL:
            continue
        if k not in fields:
            raise ArchgradError(f"{path}: setting search.{k} is missing")
        v = fields[k]
        if not isinstance(v, t) or (isinstance(v, bool) and t is int):
            raise ArchgradError(f"{path}: search.{k} has the wrong type ({type(v).__name__})")
    return SearchConfig(**fields), meta


def _check_config(cfg: SearchConfig) -> Strategy:
    """Everything about a configuration that can be checked without data: registered names,
    every option's type and range, epochs and warm-up. Returns the strategy it builds."""
    check_seed(cfg.seed)
    space_cls = SPACES.get(cfg.space)
    STRATEGIES.get(cfg.strategy)
    for name, v in (("epochs", cfg.epochs), ("batch size", cfg.batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArchgradError(f"{name} must be a positive integer, got {v!r}")
    if cfg.epochs > 100_000 or cfg.batch_size > 1_000_000:
        raise ArchgradError(f"epochs ({cfg.epochs}) or batch size ({cfg.batch_size}) out of "
                            f"range (at most 100000 and 1000000)")
    if isinstance(cfg.eval_every, bool) or not isinstance(cfg.eval_every, int) \
            or cfg.eval_every < 0:
        raise ArchgradError(f"eval_every must be an integer >= 0, got {cfg.eval_every!r}")
    if cfg.subset is not None and (isinstance(cfg.subset, bool) or not isinstance(cfg.subset, int)
                                   or cfg.subset < 2):
        raise ArchgradError(f"--subset must be an integer of at least 2, got {cfg.subset!r}")
    strat = make_strategy(cfg.strategy, **cfg.strategy_options)
    strat.bind_space(space_cls, cfg.space_options)
    get_space(cfg.space, **cfg.space_options)  # the space's own checks
    if strat.derive_mode == "best-valid" and not cfg.eval_every:
        raise ArchgradError("derive=best-valid picks the epoch whose supernet validated best: "
                            "it needs the validation figures (eval_every of at least 1)")
    need = strat.min_epochs
    if cfg.epochs < need:
        raise ArchgradError(f"strategy '{cfg.strategy}' needs at least {need} epochs, got "
                            f"{cfg.epochs}")
    if not isinstance(strat.update, NoUpdate) and \
            strat.first_arch_epoch(cfg.epochs) >= cfg.epochs:
        raise ArchgradError(f"warmup_epochs={strat.warmup_epochs} leaves no epoch with "
                            f"architecture steps in a search of {cfg.epochs} epoch"
                            f"{'s' if cfg.epochs != 1 else ''}; give a "
                            f"smaller warmup_epochs (or a fraction below 1) or more epochs")
    resolve_device(cfg.device)
    if cfg.amp is not None and cfg.amp not in AMP_DTYPES:
        raise ArchgradError(f"--amp must be one of {', '.join(AMP_DTYPES)} (or absent for "
                            f"fp32), got {cfg.amp!r}")
    if not isinstance(cfg.sync_bn, bool):
        raise ArchgradError(f"sync_bn must be true or false, got {cfg.sync_bn!r}")
    return strat


def _new_config(space, strategy, dataset, epochs, batch_size, seed, device, data_dir, subset,
                eval_every, space_options, strategy_options, options, amp=None,
                sync_bn=False) -> SearchConfig:
    """The configuration of a new search from ``search``'s arguments, checked."""
    seed = check_seed(seed)
    space_cls = SPACES.get(space)
    STRATEGIES.get(strategy)
    dataset = resolve_dataset(space_cls, dataset)
    sp, st = split_options(space, strategy, options)
    for k, v in (space_options or {}).items():
        if k in sp and sp[k] != v:
            raise ArchgradError(f"space option {k} is given twice ({sp[k]!r} and {v!r})")
        sp[k] = v
    for k, v in (strategy_options or {}).items():
        if k in st and st[k] != v:
            raise ArchgradError(f"strategy option {k} is given twice ({st[k]!r} and {v!r})")
        st[k] = v
    st = with_arch_defaults(space_cls, strategy, st)
    strat = make_strategy(strategy, **st)
    sp = with_space_defaults(space_cls, sp, strat)
    # a quick dataset's budget, else the space's recipe (the recurrent cells), else the
    # strategy's paper's, else 50 epochs / the space's batch
    if epochs is None:
        epochs = (space_cls.own_data_epochs if space_cls.own_data else
                  DATASETS.get(dataset).search_epochs) or space_cls.search_epochs \
            or strat.default_epochs or DEFAULT_EPOCHS
    if batch_size is None:
        batch_size = space_cls.default_batch_size if space_cls.own_data else \
            (DATASETS.get(dataset).search_batch_size or space_cls.search_batch_size
             or strat.default_batch_size or space_cls.default_batch_size)
    cfg = SearchConfig(space, strategy, dataset, epochs, batch_size, seed, str(device),
                       str(data_dir) if data_dir else None, subset, eval_every, sp, st, amp,
                       sync_bn)
    _check_config(cfg)
    return cfg


def check_search_kwargs(space: str = "nb201", strategy: str = "darts",
                        dataset: str | None = None, *, epochs=None, batch_size=None, seed=0,
                        device="auto", data_dir=None, subset=None, eval_every=1,
                        space_options=None, strategy_options=None, amp=None,
                        sync_bn=False, **options) -> SearchConfig:
    """Check ``search``'s keyword arguments without running anything (a sweep checks every
    run before it starts one)."""
    return _new_config(space, strategy, dataset, epochs, batch_size, seed, device, data_dir,
                       subset, eval_every, space_options, strategy_options, options, amp,
                       sync_bn)
