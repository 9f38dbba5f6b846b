"""``search(...)``: run a strategy on a space and a dataset; write and resume run directories.

A run directory holds:

* ``config.json``   the resolved configuration (everything needed to rebuild the run);
* ``metrics.jsonl`` one JSON record per epoch (losses, accuracies, learning rate, architecture
  probabilities, entropy, derived genotype, benchmark figures, gradient-estimate variance);
* ``checkpoint.pt`` weights, architecture parameters, optimizer states, RNG states, epoch and the
  history so far, with a digest of its contents checked on load — written atomically after
  every epoch; the one it replaces stays as ``checkpoint.prev.pt`` (a fallback if it is damaged);
* ``genotype.txt`` / ``result.json`` when the search has finished.

``search(resume=RUN_DIR)`` continues from the last checkpoint; on CPU the result equals that of
an uninterrupted run with the same seed, bit for bit.
"""
from __future__ import annotations

import itertools
import json
import math
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import __version__, schemas
from .arch import Mix, entropy, max_prob
from .bn import bn_modules, recalibrated
from .data import DATASETS, load_dataset
from .errors import ArchgradError, DivergenceError
from .methods import STRATEGIES, accepted_options, make_strategy
from .rundir import (
    RunLock,
    as_path,
    atomic_write_json,
    atomic_write_text,
    check_out_dir,
    check_seed,
    claim_dir,
    clean_temporaries,
    config_digest,
    load_checkpoint,
    make_dir,
    read_json,
    resumed_config,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    undo_set_up,
    write_jsonl,
)
from .spaces import SPACES, Genotype, get_space
from .strategy import NoUpdate, Strategy
from .task import ImageTask

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


class _EpochStats:
    """Sums step statistics (as tensors, so no host sync per step) and the moments of the
    architecture-gradient estimates."""

    def __init__(self):
        self.sums: dict[str, Tensor | float] = {}
        self.counts: dict[str, int] = {}
        self.g1 = self.g2 = None
        self.ng = 0

    def add(self, stats: dict):
        grads = stats.pop("_grads", None)
        for k, v in stats.items():
            if k.startswith("_"):
                continue
            if isinstance(v, Tensor):
                v = v.detach().double()
            elif not isinstance(v, (int, float)):
                continue
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        if grads:
            g = torch.cat([grads[k].detach().double().flatten() for k in sorted(grads)])
            self.g1 = g if self.g1 is None else self.g1 + g
            self.g2 = g * g if self.g2 is None else self.g2 + g * g
            self.ng += 1

    def means(self) -> dict[str, float]:
        # statistics named n_* are counts: summed over the epoch, not averaged
        out = {k: float(v) if k.startswith("n_") else float(v) / self.counts[k]
               for k, v in self.sums.items()}
        for k in ("train_acc", "arch_acc"):
            if k in out:
                out[k] *= 100.0
        if self.ng >= 2:
            m1, m2 = self.g1 / self.ng, self.g2 / self.ng
            var = (m2 - m1 * m1).clamp_min(0) * self.ng / (self.ng - 1)
            out["grad_var"] = float(var.mean())        # mean per-coordinate variance
            out["grad_sq_norm"] = float(m2.sum())     # E||g||^2
            out["grad_mean_sq_norm"] = float((m1 * m1).sum())  # ||E g||^2
        return out


def _probs_lists(arch) -> dict[str, list[list[float]]]:
    return {k: [[round(float(x), 6) for x in row] for row in v.cpu().tolist()]
            for k, v in arch.probs_detached().items()}


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


def search(space: str = "nb201", strategy: str = "darts", dataset: str | None = None, *,
           epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
           device: str = "auto", data_dir: str | None = None, subset: int | None = None,
           out: str | Path | None = None, resume: str | Path | None = None,
           eval_every: int = 1, space_options: dict | None = None,
           strategy_options: dict | None = None, progress: bool = False,
           callbacks: Sequence[Callable[[dict, dict], None]] = (), log_csv: bool = True,
           tensorboard: bool = False, amp: str | None = None, sync_bn: bool = False,
           **options) -> SearchResult:
    """Search ``space`` with ``strategy`` on ``dataset``; returns the final genotype and the
    per-epoch history.

    Extra keyword ``options`` go to the space (``C``, ``N``, ``include_none`` ...) or the strategy
    (``arch_lr``, ``warmup_epochs`` ...) that accepts them. ``out`` names a run directory to
    write; ``resume`` continues one (from its checkpoint, or from its config.json when it was
    stopped before the first; a finished run is returned as it is). ``callbacks`` are called
    after every epoch with the epoch's record and a dict of live objects (``model``,
    ``strategy``, ``space``). ``amp``: mixed precision, "bf16" or "fp16" (the weights' loss
    scaled; the architecture parameters and their optimizer stay fp32). Under ``torchrun`` the
    search runs data-parallel (``archgrad.dist``); ``sync_bn`` then normalises with the
    statistics of the whole global batch (a no-op in one process). Everything is validated
    before the run directory is created.
    """
    from . import dist
    dist.setup(device)  # under torchrun: join the process group (a no-op otherwise)
    device = dist.run_device(device)
    if resume is not None:
        given = {k: v for k, v in dict(space=space != "nb201", strategy=strategy != "darts",
                                       dataset=dataset is not None,
                                       batch_size=batch_size is not None, seed=seed != 0,
                                       subset=subset is not None, out=out is not None,
                                       amp=amp is not None, sync_bn=bool(sync_bn),
                                       options=bool(options or space_options
                                                    or strategy_options)).items() if v}
        if given:
            raise ArchgradError(
                f"--resume takes the configuration from RUN_DIR/config.json; drop "
                f"{', '.join('--' + k.replace('_', '-') for k in given)}")
        run_dir = as_path(resume, "resume")
        cfg, meta = read_run_config(run_dir)
        if epochs is not None and epochs != cfg.epochs:
            raise ArchgradError(
                f"{run_dir} is a search of {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}; it "
                f"cannot be extended to "
                f"{epochs}: the learning-rate cosine, the temperature and the warm-up share are "
                f"functions of the total, so a longer search is not this one continued. Start "
                f"a new search with --epochs {epochs}")
        saved_digest = _digest(cfg)
        resumed_config(cfg, run_dir / "config.json", _check_config, device, data_dir)
        return _run(cfg, run_dir, True, progress, callbacks, meta, saved_digest,
                    log_csv=log_csv, tensorboard=tensorboard)
    cfg = _new_config(space, strategy, dataset, epochs, batch_size, seed, device, data_dir,
                      subset, eval_every, space_options, strategy_options, options, amp,
                      sync_bn)
    run_dir = as_path(out, "out") if out is not None else None
    if run_dir is not None:
        check_out_dir(run_dir)
        if (run_dir / "config.json").exists() or (run_dir / "checkpoint.pt").exists():
            raise ArchgradError(f"{run_dir} already holds a search; use --resume {run_dir} to "
                                f"continue it or choose another --out")
    return _run(cfg, run_dir, False, progress, callbacks, log_csv=log_csv,
                tensorboard=tensorboard)


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


class DivergenceMonitor:
    """Watches every step for a non-finite loss or gradient without reading tensors back (no
    host synchronisation inside a step); :meth:`problem` is read at the end of the epoch."""

    QUANTITIES = {"train_loss": "the training loss", "arch_loss": "the architecture loss",
                  "_wnorm": "the weights' gradient norm", "_grads": "the architecture gradient"}

    def __init__(self):
        self.first: dict[str, tuple[Tensor, Tensor]] = {}  # quantity -> (first bad step, value)

    def add(self, stats: dict, step: int) -> None:
        for k in self.QUANTITIES:
            v = stats.get(k)
            if v is None:
                continue
            if k == "_grads":
                if not v:
                    continue
                v = torch.stack([g.detach().float().abs().sum() for g in v.values()]).sum()
            elif not isinstance(v, Tensor):
                v = torch.tensor(float(v))
            v = v.detach().float()
            bad = ~torch.isfinite(v)
            if k not in self.first:
                self.first[k] = (torch.full((), -1, dtype=torch.long, device=v.device),
                                 torch.zeros((), device=v.device))
            s, val = self.first[k]
            take = bad & (s < 0)
            self.first[k] = (torch.where(take, torch.full_like(s, step), s),
                             torch.where(take, v, val))

    def problem(self) -> tuple[str, int, float] | None:
        found = []
        for k, (s, val) in self.first.items():
            if int(s) >= 0:
                found.append((int(s), self.QUANTITIES[k], float(val)))
        if not found:
            return None
        step, what, val = min(found)
        return what, step, val


def _check_finite_state(model, strategy) -> str | None:
    for name, p in list(model.named_parameters()) + [
            ("architecture " + k, v) for k, v in strategy.arch.named_parameters()]:
        if not torch.isfinite(p.detach()).all():
            return f"the parameter {name}"
    return None


def _divergence_hint(cfg: SearchConfig, strategy: Strategy) -> str:
    lr = strategy.weights_cfg.lr
    arch_lr = getattr(strategy.update, "lr", None)
    return (f"try a smaller learning rate (lr {lr:g}"
            + (f", arch_lr {arch_lr:g}" if isinstance(arch_lr, float) else "") + ")")


def _run(cfg: SearchConfig, run_dir: Path | None, resuming: bool, progress: bool,
         callbacks, meta: dict | None = None, saved_digest: str | None = None, *,
         log_csv: bool = True, tensorboard: bool = False) -> SearchResult:
    from . import dist
    ctx = dist.context()
    dist.check_batch(cfg.batch_size)
    main = ctx.main  # rank 0 alone writes the run directory and draws the progress
    progress = progress and main
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    space_cls = SPACES.get(cfg.space)
    strategy, stages = _planned_stages(cfg)
    data = None if space_cls.own_data else load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)

    def stage_space(i: int):
        return _stage_space(cfg, stages[i], data)

    def make_stage(i: int):
        """The space and supernet of stage i (one stage unless the strategy is progressive)."""
        sp = stage_space(i)
        return sp, sp.supernet().to(dev)

    # what cannot fit in memory is refused before anything is built or written
    for i in range(len(stages)):
        _check_memory(stage_space(i), data, cfg, dev)
    if space_cls.modality == "sequence":  # so is a corpus too short for one step
        build_task(stage_space(0), None, data, cfg, torch.device("cpu"), strategy)
    if tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ArchgradError("--tensorboard needs the tensorboard package: pip install "
                                "tensorboard") from None

    lock = None
    made = None  # a new run's directories: removed if its set-up fails before config.json
    ckpt = None
    history: list[dict] = []
    start = 0
    stage_index = strategy.stage_of(0, cfg.epochs)[0]
    try:
        ctx.barrier()  # every rank has checked the set-up before rank 0 writes anything
        if run_dir is not None:
            if main:
                if resuming:
                    make_dir(run_dir)
                else:
                    run_dir, made = claim_dir(run_dir)
                lock = RunLock(run_dir).acquire()
                clean_temporaries(run_dir)
            ctx.barrier()
            if resuming:
                ckpt_path = run_dir / "checkpoint.pt"
                if ckpt_path.exists():  # else: stopped before its first checkpoint, start over
                    ckpt = load_checkpoint(ckpt_path, required=(
                        "epoch", "stage", "model", "strategy", "history", "rng"))
                    _check_checkpoint(ckpt, ckpt_path, cfg, meta or {}, saved_digest)
                    saved_world = int(ckpt.get("world_size", 1))
                    if saved_world != ctx.world:
                        raise ArchgradError(
                            f"{run_dir} was searched by {saved_world} process"
                            f"{'es' if saved_world != 1 else ''}; resume it with "
                            f"{saved_world} (a different number would shard the data "
                            f"differently and the run would not be the same)")
                    if ckpt["epoch"] + 1 >= cfg.epochs and (run_dir / "result.json").is_file() \
                            and (run_dir / "genotype.txt").is_file():
                        return _finished(cfg, run_dir, ckpt, stage_space(ckpt["stage"]))
                    stage_index = ckpt["stage"]
            else:
                if main and (run_dir / "config.json").exists():
                    raise ArchgradError(f"{run_dir} already holds a search; use --resume "
                                        f"{run_dir} to continue it or choose another --out")
                run_id = ctx.gather_objects(uuid.uuid4().hex)[0]  # rank 0's, on every rank
                meta = {"search": asdict(cfg), "run_id": run_id,
                        "config_digest": _digest(cfg)}
        space, model = make_stage(stage_index)
        task = build_task(space, model, data, cfg, dev, strategy)
        costs = space.op_costs() if strategy.needs_costs else None
        strategy.setup(space.choices(), model, cfg.seed, dev, costs=costs)
        if cfg.amp is not None:
            strategy.amp = AMP_DTYPES[cfg.amp]
            if cfg.amp == "fp16":
                strategy.scaler = torch.amp.GradScaler(dev.type)
        if dev.type == "cuda":  # fixed shapes within a step: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        if ctx.active:
            strategy.dist = ctx
            ctx.broadcast_buffers(model)
            with torch.no_grad():  # the same initial weights everywhere (they are, by the seed)
                for p in list(model.parameters()) + list(strategy.arch.parameters()):
                    torch.distributed.broadcast(p.data, 0)
        loss_fn = task.loss_fn
        steps = task.steps_per_epoch
        bench = space.benchmark()
        if run_dir is not None and not resuming and main:
            atomic_write_json(run_dir / "config.json", {
                **meta, "archgrad": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(dev),
                "world_size": ctx.world,
                "batch_size_means": "the batch of all processes together" if ctx.active else
                "the batch of the one process",
                **({"backend": ctx.backend} if ctx.active else {}),
                "strategy": strategy.describe(), "space": space.config,
                "dataset": task.describe()})
        if ckpt is not None:
            where = run_dir / "checkpoint.pt"
            try:
                model.load_state_dict(ckpt["model"])
                strategy.load_state_dict(ckpt["strategy"])
                ranks = ckpt.get("rng_ranks")
                set_rng_state(ranks[ctx.rank] if ranks else ckpt["rng"])
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
                msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else \
                    type(e).__name__
                raise ArchgradError(f"{where} does not fit this run's network and strategy "
                                    f"({msg})") from None
            history = list(ckpt["history"])
            start = ckpt["epoch"] + 1
            if history and history[-1].get("stopped"):  # stopped early: nothing left to run
                start = cfg.epochs
        if run_dir is not None and resuming and main:  # the epochs the checkpoint holds
            _write_logs(run_dir, history, log_csv)
        writer = None
        if tensorboard and run_dir is not None and main:
            writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start + 1)

        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=cfg.epochs * steps, initial=start * steps, unit="step",
                       dynamic_ncols=True, desc=f"{cfg.strategy} {cfg.space}/{cfg.dataset}")
        try:
            for epoch in range(start, cfg.epochs):
                t0 = time.perf_counter()
                new_stage = strategy.stage_of(epoch, cfg.epochs)[0]
                stage_info = {}
                if new_stage != stage_index:  # a progressive strategy's next, deeper supernet
                    stage_index = new_stage
                    space, model = make_stage(stage_index)
                    stage_info = strategy.begin_stage(stage_index, stages[stage_index], model)
                    if space_cls.own_data:
                        task.model = model
                lr = strategy.set_lr(epoch, cfg.epochs)
                model.train()
                acc = _EpochStats()
                monitor = DivergenceMonitor()
                arch_loss_fn = getattr(task, "arch_loss_fn", None)
                done_steps = 0
                shown = -math.inf
                for step, (bt, bv) in enumerate(task.batches(epoch)):
                    with ctx.synchronised_batch_norm(cfg.sync_bn):
                        stats = strategy.step(bt, bv, loss_fn=loss_fn, epoch=epoch,
                                              epochs=cfg.epochs, step=step,
                                              steps_per_epoch=steps, arch_loss_fn=arch_loss_fn)
                    done_steps += 1
                    monitor.add(stats, step)
                    acc.add(stats)
                    if bar is not None:
                        bar.update(1)
                        # the running figures read tensors back (a host synchronisation on a
                        # GPU): at most every 2 seconds, and at the epoch's end
                        now = time.monotonic()
                        if now - shown >= 2.0 or step == steps - 1:
                            shown = now
                            m = acc.means()
                            post = {k: f"{m[k]:.3g}" for k in
                                    ("train_loss", "train_acc", "arch_acc") if k in m}
                            if "train_nll" in m:
                                post["train_ppl"] = f"{math.exp(min(m['train_nll'], 700)):.1f}"
                            bar.set_postfix(post, refresh=False)
                bad = monitor.problem()
                if bad is None:
                    broken = _check_finite_state(model, strategy)
                    if broken:
                        bad = (broken, steps - 1, float("nan"))
                if ctx.any_true(bad is not None) and bad is None:
                    bad = ("the loss of another process", steps - 1, float("nan"))
                if bad is not None:
                    what, at, val = bad
                    kept = (f"the checkpoint of epoch {epoch} is kept" if epoch > 0 and
                            run_dir is not None else "no checkpoint was written")
                    raise DivergenceError(
                        f"the search diverged in epoch {epoch + 1}, step {at + 1}: {what} is "
                        f"{val:g}; {kept}, no result is written; "
                        f"{_divergence_hint(cfg, strategy)}")
                record = {"epoch": epoch + 1, "lr": lr, "steps": done_steps}
                if len(stages) > 1:
                    record["stage"] = stage_index + 1
                record.update(stage_info)
                record.update(ctx.average_floats(acc.means()))
                ctx.broadcast_buffers(model)  # rank 0's running statistics everywhere
                if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0
                                       or epoch + 1 == cfg.epochs):
                    ev = task.evaluate(model, strategy.estimator.eval_mix(
                        strategy.arch, eval_generator(cfg.seed, epoch), epoch, cfg.epochs),
                        bn=strategy.estimator.eval_bn)
                    record.update({f"valid_{k}": v for k, v in ev.items()})
                task.summarize(record)
                probs = strategy.arch.probs_detached()
                geno = strategy.derive(space)
                record.update(entropy=entropy(probs), max_prob=max_prob(probs),
                              genotype=str(geno), probs=_probs_lists(strategy.arch))
                if task.record_derived:
                    ev = task.evaluate(model, space.discrete_mix(geno, device=dev))
                    record.update({f"derived_{k}": v for k, v in ev.items()})
                record.update(space.report(model, geno))
                if strategy.derive_mode.startswith("process-best"):
                    pb = strategy.process_best()
                    record["process_best"] = str(space.genotype_from_indices(pb)) if pb else None
                if bench is not None:
                    record["benchmark"] = bench.summary(geno)
                record.update(strategy.end_epoch(task, history, record))  # eigenvalue, stop
                record["time_s"] = round(time.perf_counter() - t0, 3)
                history.append(record)
                rngs = ctx.gather_objects(rng_state()) if run_dir is not None else None
                if run_dir is not None and main:
                    save_checkpoint(run_dir / "checkpoint.pt", {
                        "epoch": epoch, "stage": stage_index, "model": model.state_dict(),
                        "strategy": strategy.state_dict(), "history": history,
                        "rng": rngs[0], "run_id": meta["run_id"],
                        "config_digest": meta["config_digest"], "world_size": ctx.world,
                        **({"rng_ranks": rngs} if ctx.active else {})}, keep_previous=True)
                    _write_logs(run_dir, history, log_csv)
                if writer is not None:
                    _tensorboard(writer, record)
                if bar is not None:
                    bar.write(_epoch_line(record, cfg.epochs))
                for cb in callbacks:
                    cb(record, {"model": model, "strategy": strategy, "space": space,
                                "epoch": epoch, "run_dir": run_dir, "stage": stage_index})
                if record.get("stopped"):  # early stopping fired (the checkpoint says so)
                    if bar is not None:
                        bar.write(f"stopped after epoch {record['epoch']}: {record['stopped']}")
                    break
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return _finish(cfg, run_dir if main else None, space, model, strategy, task, history,
                       bench)
    finally:
        if lock is not None:
            if made is not None and not (run_dir / "config.json").exists():
                undo_set_up(run_dir, made, lock)  # the set-up failed: leave nothing
            lock.release()


def _check_checkpoint(ckpt: dict, path: Path, cfg: SearchConfig, meta: dict,
                      saved_digest: str | None) -> None:
    if not isinstance(ckpt["epoch"], int) or not -1 <= ckpt["epoch"] < cfg.epochs or \
            not isinstance(ckpt["stage"], int) or not isinstance(ckpt["history"], list) or \
            not isinstance(ckpt["model"], dict) or not isinstance(ckpt["strategy"], dict):
        raise ArchgradError(f"{path} is damaged (its epoch, stage or state is not valid for "
                            f"this run)")
    if meta.get("run_id") is not None and ckpt.get("run_id") != meta.get("run_id"):
        raise ArchgradError(f"{path} belongs to another run (its run id is not the one in "
                            f"config.json); put back this run's checkpoint or start a new "
                            f"search")
    if ckpt.get("config_digest") is not None and saved_digest is not None and \
            ckpt["config_digest"] != saved_digest:
        raise ArchgradError(f"{path.parent / 'config.json'} was changed after the search "
                            f"started (it no longer matches checkpoint.pt); restore it, or "
                            f"start a new search with the new settings")


def _finished(cfg: SearchConfig, run_dir: Path, ckpt: dict, space) -> SearchResult:
    """A finished run, returned as it is (nothing is recomputed or written)."""
    path = run_dir / "result.json"
    try:
        final = schemas.read(path)
        geno = space.genotype((run_dir / "genotype.txt").read_text().strip())
    except (OSError, UnicodeDecodeError, ArchgradError) as e:
        raise ArchgradError(f"{path} or genotype.txt is damaged ({e}); remove them to "
                            f"re-derive the result from the last checkpoint") from None
    res = SearchResult(geno, list(ckpt["history"]), final, cfg, run_dir,
                       ckpt["history"][-1].get("probs", {}) if ckpt["history"] else {})
    res.already_finished = True
    return res


def build_task(space, model, data, cfg: SearchConfig, dev, strategy: Strategy):
    """The task the search loop drives: the space's own (the toy task), language modelling on
    a text corpus, or image classification; under torchrun, this rank's shard of the batches
    (the toy task's batches are generated whole on every rank)."""
    from . import dist
    if space.own_data:
        return space.task(model, cfg.batch_size, cfg.seed, dev)
    if space.modality == "sequence":
        from .lmtask import LMTask
        return LMTask(data, cfg.batch_size, cfg.seed, dev, shard=dist.context().shard(),
                      **space.lm_settings())
    return ImageTask(data, cfg.batch_size, cfg.seed, dev, space.loss, strategy.data_split,
                     shard=dist.context().shard())


def _stage_space(cfg: SearchConfig, stage, data):
    """The space of one stage of the search (a progressive strategy's stages change options),
    with the options the dataset sets (classes, input channels, vocabulary)."""
    space_cls = SPACES.get(cfg.space)
    opts = dict(cfg.space_options)
    opts.update(stage.space)
    if data is not None:
        for k, v in data.space_options().items():
            if k in space_cls.options:
                opts.setdefault(k, v)
    return get_space(cfg.space, **opts)


def _planned_stages(cfg: SearchConfig) -> tuple[Strategy, list]:
    """The strategy of ``cfg`` and the stages its search runs (one unless progressive)."""
    strategy = make_strategy(cfg.strategy, **cfg.strategy_options)
    strategy.bind_space(SPACES.get(cfg.space), cfg.space_options)
    return strategy, strategy.stages_for(cfg.epochs)


def memory_need(cfg: SearchConfig, data, device) -> int:
    """Bytes the search of ``cfg`` needs on ``device`` at its largest stage (estimated on the
    meta device); a search that cannot fit there alone is refused in one line."""
    return max(_check_memory(_stage_space(cfg, st, data), data, cfg, torch.device(device))
               for st in _planned_stages(cfg)[1])


def plan_search(**kwargs) -> dict:
    """What ``search(**kwargs)`` would run, checked as the search checks it (names, options,
    data, memory) with nothing run or written: the resolved settings, steps per epoch, weight
    and architecture steps, and the memory estimate."""
    from .memory import GB, available_bytes
    cfg = check_search_kwargs(**kwargs)
    dev = resolve_device(cfg.device)
    space_cls = SPACES.get(cfg.space)
    data = None if space_cls.own_data else load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    need = memory_need(cfg, data, dev)
    strategy, stages = _planned_stages(cfg)
    space = _stage_space(cfg, stages[0], data)
    model = space.supernet() if space_cls.own_data else None  # the toy task draws from it
    steps = build_task(space, model, data, cfg, torch.device("cpu"), strategy).steps_per_epoch
    arch_epochs = [e for st in stages for e in range(st.start + st.warmup, st.end)]
    have = available_bytes(dev)
    settings = {k: v for k, v in strategy.settings().items()
                if k not in ("batch_size", "epochs")}
    return {"space": cfg.space, "strategy": cfg.strategy, "dataset": cfg.dataset,
            "device": str(dev), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "steps_per_epoch": steps, "weight_steps": steps * cfg.epochs,
            "arch_steps": len(arch_epochs) * (steps // strategy.arch_every),
            "first_arch_epoch": arch_epochs[0] + 1 if arch_epochs else None,
            "stages": len(stages), "stage_plan": [
                {"epochs": [st.start + 1, st.end], "warmup_epochs": st.warmup,
                 "space": dict(st.space)} for st in stages],
            "memory_gb": need / GB,
            "available_gb": have / GB if have is not None else None,
            "space_options": dict(space.config), "strategy_options": settings}


def _check_memory(space, data, cfg: SearchConfig, dev) -> int:
    """Refuse a search network that cannot fit (estimated on the meta device); the bytes it
    needs."""
    from .memory import guarded
    groups = space.choices()

    def run(model):
        mix = Mix({g.label: torch.full(g.shape, 1.0 / g.shape[1], device="meta")
                   for g in groups},
                  {g.label: [tuple(k for k, c in enumerate(g.candidates) if not c.skipped)]
                   * g.shape[0] for g in groups})
        return model(space.meta_input(cfg.batch_size, data), mix)

    return guarded(space.supernet, run, dev, f"the {cfg.space} search network at batch "
                   f"{cfg.batch_size}", "use fewer channels or cells (--channels, --cells) or "
                   "a smaller --batch-size").training_bytes()


METRIC_COLUMNS = ("epoch", "stage", "lr", "train_loss", "train_acc", "arch_loss", "arch_acc",
                  "valid_loss", "valid_acc", "derived_loss", "entropy", "max_prob",
                  "skip_connects", "grad_var", "benchmark_cifar10", "benchmark_cifar100",
                  "benchmark_ImageNet16-120", "time_s", "genotype")


def _flat(record: dict) -> dict:
    out = dict(record)
    for k, v in (record.get("benchmark") or {}).items():
        out[f"benchmark_{k}"] = v
    return out


def _write_logs(run_dir: Path, history: list[dict], csv_too: bool) -> None:
    write_jsonl(run_dir / "metrics.jsonl", history)
    if csv_too:
        import csv
        import io
        buf = io.StringIO()
        cols = [c for c in METRIC_COLUMNS if any(c in _flat(r) for r in history)]
        w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in history:
            w.writerow({k: v for k, v in _flat(r).items() if k in cols})
        atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def _tensorboard(writer, record: dict) -> None:
    step = record["epoch"]
    for k, v in _flat(record).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            writer.add_scalar(k.replace("benchmark_", "benchmark/"), v, step)
    writer.flush()


def _epoch_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}"]
    for k, fmt in (("train_loss", "{:.3f}"), ("train_acc", "{:.1f}%"), ("train_ppl", "{:.1f}"),
                   ("valid_acc", "{:.1f}%"), ("valid_ppl", "{:.1f}"), ("entropy", "{:.3f}")):
        if r.get(k) is not None:
            parts.append(f"{k} " + fmt.format(r[k]))
    if r.get("max_prob") is not None:
        parts[-1] += f" (max p {r['max_prob']:.2f})"
    if r.get("benchmark"):
        parts.append(f"nb201 cifar10 {r['benchmark']['cifar10']:.2f}%")
    parts.append(r["genotype"])
    return "  ".join(parts)


def _finish(cfg, run_dir, space, model, strategy, task, history, bench) -> SearchResult:
    dev = next(iter(model.state_dict().values())).device
    probs = strategy.arch.probs_detached()
    argmax_geno = strategy.derive(space)
    geno = argmax_geno
    final: dict[str, Any] = {}
    if strategy.rank_candidates:
        geno, final["ranking"] = _rank_random(space, model, strategy, task, dev)
    elif strategy.derive_mode.startswith("process-best"):
        pb = strategy.process_best()
        if pb is not None:
            geno = space.genotype_from_indices(pb)
    elif strategy.derive_mode == "best-valid":
        best = best_valid_record(history)
        if best is not None:
            geno = space.genotype(best["genotype"])
            final["best_valid_epoch"] = best["epoch"]
    elif strategy.derive_mode == "perturbation":  # DARTS-PT on the final supernet
        from .selection import perturbation_select
        geno, final["perturbation"] = perturbation_select(
            space, model, strategy, task, tune_epochs=strategy.pt_options["pt_tune_epochs"],
            examples=strategy.pt_options["pt_examples"], seed=strategy.seed)
    if history and history[-1].get("stopped"):  # early stopping: its chosen architecture
        last = history[-1]
        geno = space.genotype(last["stop_genotype"])
        final.update(stopped=last["stopped"], stopped_after_epoch=last["epoch"],
                     stop_epoch=last.get("stop_epoch", last["epoch"]))
    if strategy.seen:  # sampling strategies: both forms of "process best", for the record
        for mode in ("process-best", "process-best-mean"):
            final[mode.replace("-", "_") + "_genotype"] = \
                str(space.genotype_from_indices(strategy.process_best(mode)))
    final.update({"genotype": str(geno), "derive": strategy.final_derive,
                  "argmax_genotype": str(argmax_geno), "epochs": cfg.epochs,
                  "entropy": entropy(probs), "max_prob": max_prob(probs)})
    final.update(space.report(model, geno))
    # discretization gap (SNAS Table 1): the derived architecture evaluated with the supernet's
    # shared weights, without retraining, beside the supernet itself; also with its BN statistics
    # recalibrated for it (no weights change), which separates the statistics' share of the gap
    last = max(cfg.epochs - 1, 0)
    sup = task.evaluate(model, strategy.estimator.eval_mix(
        strategy.arch, eval_generator(cfg.seed, last), last, cfg.epochs),
        bn=strategy.estimator.eval_bn)
    final["supernet_eval"] = strategy.estimator.describe_eval(
        bool(bn_modules(model)), getattr(task, "eval_batches", None))
    if getattr(task, "eval_split", None):
        final["eval_split"] = task.eval_split
    dmix = space.discrete_mix(geno, device=dev)
    disc = task.evaluate(model, dmix)
    with recalibrated(model, dmix, itertools.islice(task.weight_batches(0), BN_BATCHES)):
        disc_bn = task.evaluate(model, dmix)
    for k in sup:
        final[f"supernet_valid_{k}"] = sup[k]
        final[f"derived_valid_{k}"] = disc[k]
        final[f"derived_valid_{k}_bn"] = disc_bn[k]
    # the gap is positive when the derived architecture does worse than the supernet
    key = "acc" if "acc" in sup else "loss"
    sign = 1.0 if key == "acc" else -1.0
    final["discretization_gap"] = sign * (sup[key] - disc[key])
    final["discretization_gap_bn"] = sign * (sup[key] - disc_bn[key])
    final["gap_metric"] = key
    if bench is not None:
        final["benchmark"] = bench.summary(geno)
    final["search_time_s"] = round(sum(r.get("time_s", 0) for r in history), 2)
    final["peak_rss_mb"] = _peak_rss_mb()
    if dev.type == "cuda":
        final["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)
    result = SearchResult(geno, history, final, cfg, run_dir, _probs_lists(strategy.arch))
    if run_dir is not None:
        atomic_write_json(run_dir / "result.json", final)
        atomic_write_text(run_dir / "genotype.txt", str(geno) + "\n")
        try:
            from .plot import draw
            draw(geno, run_dir / "cell", f"{cfg.strategy} on {cfg.space}/{cfg.dataset}")
        except Exception as e:  # a diagram must never cost the result
            atomic_write_text(run_dir / "cell.error.txt", f"{type(e).__name__}: {e}\n")
    return result


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory (MB): the search's when it runs in its own process
    (a sweep's runs do)."""
    try:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20, 1)
    except (ImportError, OSError):
        return None


def best_valid_record(history: list[dict]) -> dict | None:
    """The first epoch's record with the best supernet validation figure (accuracy, else
    minus the loss or perplexity; GAEA's train_search.py keeps the first strict best)."""
    def score(r):
        for k, sign in (("valid_acc", 1.0), ("valid_ppl", -1.0), ("valid_loss", -1.0)):
            if r.get(k) is not None:
                return sign * float(r[k])
        return None
    best, best_score = None, None
    for r in history:
        sc = score(r)
        if sc is not None and (best_score is None or sc > best_score):
            best, best_score = r, sc
    return best


def _rank_random(space, model, strategy, task, dev, top: int = 5, limit: int = 512):
    """Random search with weight sharing (Li & Talwalkar): rank K uniformly sampled
    architectures by their shared-weight validation score on a subset, re-score the best few on
    the whole validation split, return the best."""
    from .sampling import uniform_indices
    gen = torch.Generator().manual_seed(strategy.seed + 7919)
    alive = {k: strategy.arch.alive(k) for k in strategy.arch.labels()}
    seen, cands = set(), []
    for _ in range(strategy.rank_candidates * 10):
        idx = uniform_indices(alive, gen)
        g = space.genotype_from_indices(idx)
        if str(g) not in seen:
            seen.add(str(g))
            cands.append(g)
        if len(cands) == strategy.rank_candidates:
            break

    def score(ev):
        return ev["acc"] if "acc" in ev else -ev["loss"]

    loader = task.validation_batches(strategy.seed + 7919) \
        if strategy.rank_selection == "one-batch" else None
    if loader is not None:
        # NAS-Bench-201's RSPS (RANDOM-NAS.py search_find_best): each cell on the next batch of
        # a shuffled pass over the validation split, eval mode, the first best kept
        scores, it, was = [], loader.epoch(0), model.training
        model.eval()
        with torch.no_grad():
            for g in cands:
                batch = next(it, None)
                if batch is None:
                    it = loader.epoch(len(scores))
                    batch = next(it)
                out = model(batch[0], space.discrete_mix(g, device=dev))
                scores.append(float((out.argmax(-1) == batch[1]).float().mean()) * 100.0)
        model.train(was)
        order = sorted(range(len(cands)), key=lambda i: (-scores[i], i))
        return cands[order[0]], {"candidates": len(cands), "selection": "one-batch",
                                 "top": [(str(cands[i]), scores[i]) for i in order[:top]]}

    def evaluate(g, lim, n_bn):
        mix = space.discrete_mix(g, device=dev)
        with recalibrated(model, mix, itertools.islice(task.weight_batches(0), n_bn)):
            return score(task.evaluate(model, mix, limit=lim))

    # BN statistics recalibrated for each candidate (a few batches for the first ranking)
    first = [(evaluate(g, limit, 2), i) for i, g in enumerate(cands)]
    first.sort(key=lambda t: (-t[0], t[1]))
    finals = [(evaluate(cands[i], None, BN_BATCHES), i) for _, i in first[:top]]
    finals.sort(key=lambda t: (-t[0], t[1]))
    best = cands[finals[0][1]]
    return best, {"candidates": len(cands), "top": [(str(cands[i]), s) for s, i in finals]}


def load_result(run_dir: str | Path) -> dict:
    """The final result of a finished search run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "result.json").is_file():
        raise ArchgradError(f"{run_dir} has no result.json (the search has not finished; "
                            f"resume it with archgrad search --resume {run_dir})")
    return schemas.read(run_dir / "result.json")
