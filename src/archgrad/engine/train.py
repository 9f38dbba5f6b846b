"""``train(space, genotype, dataset=...)``: train a derived architecture from scratch.

SGD with a cosine learning-rate schedule (a pure function of the epoch), checkpoints after every
epoch in the run directory, exact resume, test accuracy at the end. The default recipe is the
space's (NAS-Bench-201's own for ``nb201``). A training run directory holds
``train_config.json``, ``train_metrics.jsonl`` / ``.csv``, ``train_checkpoint.pt`` and at the
end ``train_result.json``, ``model.pt`` (the state_dict with the genotype and the space's
options: ``archgrad.load_model``) and ``model.pt2`` (a stand-alone ``torch.export`` program that
loads with PyTorch alone: ``torch.export.load(path).module()``).

An epoch's work is in ``trainers``, the exported files in ``export``.
"""
from __future__ import annotations

import json
import platform
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..core.ops import count_parameters
from ..core.options import Spec, check_options
from ..core.strategy import cosine
from ..data import load_dataset
from ..errors import ArchgradError, DivergenceError, GenotypeError
from ..runs import schemas
from ..runs.rundir import (
    RunLock,
    as_path,
    atomic_write_json,
    atomic_write_text,
    check_out_dir,
    check_seed,
    claim_dir,
    clean_temporaries,
    config_digest,
    existing_dir,
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
from ..search import resolve_device
from ..spaces import SPACES, get_space
from .export import export_example, export_program, load_model, save_model
from .runtime import keep_freed_memory
from .trainers import AMP, ImageTrainer, evaluate_plain, make_trainer

#: the training API in one place (the epoch's work and the export live beside it)
__all__ = ["AMP", "ImageTrainer", "RECIPE_SPECS", "TrainConfig", "epoch_lr", "evaluate_plain",
           "export_example", "export_program", "genotype_source", "load_model", "make_trainer",
           "plan_train", "recipe_keys", "run_data", "run_space", "save_model", "spaces_of",
           "train"]

#: the training recipe's options, their kinds and ranges
RECIPE_SPECS = {
    "lr": Spec("float", lo=0.0, lo_open=True), "lr_min": Spec("float", lo=0.0),
    "momentum": Spec("float", lo=0.0, hi=0.999999), "weight_decay": Spec("float", lo=0.0),
    "nesterov": Spec("bool"), "grad_clip": Spec("float", none=True, lo=0.0, lo_open=True),
    "batch_size": Spec("int", lo=1, hi=1_000_000), "epochs": Spec("int", lo=1, hi=100_000),
    "aux_weight": Spec("float", lo=0.0), "drop_path": Spec("float", lo=0.0, hi=0.99),
    "cutout": Spec("int", lo=0, hi=4096),
    # the learning rate per epoch: cosine to lr_min, or lr x lr_gamma^epoch (DARTS's ImageNet
    # StepLR(1, gamma 0.97)); label smoothing of the training loss (DARTS's ImageNet 0.1)
    "lr_schedule": Spec("str", choices=("cosine", "exponential")),
    "lr_gamma": Spec("float", lo=0.0, hi=1.0, lo_open=True),
    "label_smoothing": Spec("float", lo=0.0, hi=0.999),
    # language models (the recurrent spaces' recipes)
    "bptt": Spec("int", lo=2, hi=100_000), "variable_length": Spec("bool"),
    "asgd": Spec("bool"), "nonmono": Spec("int", lo=1, hi=100_000),
    "tar": Spec("float", lo=0.0), "ar": Spec("float", lo=0.0),
    "eval_batch_size": Spec("int", lo=1, hi=1_000_000),
    "test_batch_size": Spec("int", lo=1, hi=1_000_000), "loss_sum_over_time": Spec("bool"),
    # mixed precision (--amp): the forward pass under autocast, fp16 with a loss scaler
    "amp": Spec("str", choices=("bf16", "fp16"), none=True),
    # under torchrun: batch norm with the statistics of the whole global batch (SyncBN)
    "sync_bn": Spec("bool"),
}
RECIPE_KEYS = tuple(RECIPE_SPECS)
#: recipe keys of one kind of network only
LM_KEYS = ("bptt", "variable_length", "asgd", "nonmono", "tar", "ar", "eval_batch_size",
           "test_batch_size", "loss_sum_over_time")
# amp: image networks for now; sync_bn: the recurrent evaluation networks have no batch norm
IMAGE_KEYS = ("aux_weight", "drop_path", "cutout", "amp", "sync_bn", "label_smoothing")
_IMAGE_ONLY = {"aux_weight": "the auxiliary head sits on a convolutional cell",
               "label_smoothing": "it smooths a classifier's targets",
               "drop_path": "it drops the paths of a convolutional cell",
               "cutout": "it masks image patches",
               "amp": "mixed precision is offered for convolutional networks",
               "sync_bn": "the recurrent evaluation networks have no batch norm"}


def recipe_keys(space_cls) -> tuple[str, ...]:
    """The training options a network of this space takes."""
    skip = IMAGE_KEYS if space_cls.modality == "sequence" else LM_KEYS
    return tuple(k for k in RECIPE_KEYS if k not in skip)


@dataclass
class TrainConfig:
    space: str
    genotype: str
    dataset: str = "digits"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    subset: int | None = None
    eval_every: int = 0
    space_options: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)


_TYPES = {"space": str, "genotype": str, "dataset": str, "seed": int, "device": str,
          "data_dir": (str, type(None)), "subset": (int, type(None)), "eval_every": int,
          "space_options": dict, "recipe": dict}


def genotype_source(value: str, parse=None):
    """A genotype string, or the final genotype of a search run directory; with ``parse`` (a
    space's ``genotype``), the parsed genotype, an error in a run's file naming the file."""
    if not isinstance(value, str) or not value.strip():
        raise ArchgradError("the genotype is empty; give a genotype string, a named genotype "
                            "(DARTS_V2, ...) or a search run directory")
    p = existing_dir(value)
    if p is not None:
        if (p / "genotype.txt").is_file():
            try:
                text = (p / "genotype.txt").read_text().strip()
                return parse(text) if parse else text
            except (OSError, UnicodeDecodeError, GenotypeError) as e:
                raise GenotypeError(f"{p / 'genotype.txt'} is damaged ({e})") from None
        if (p / "config.json").is_file():
            raise ArchgradError(f"{p} has no genotype.txt (the search has not finished; resume "
                                f"it with archgrad search --resume {p})")
        if (p / "sweep.json").is_file():
            runs = sorted(r.name for r in (p / "runs").glob("*") if r.is_dir()) \
                if (p / "runs").is_dir() else []
            raise ArchgradError(f"{p} is a sweep; name one of its runs, e.g. {p / 'runs' / runs[0]}"
                                if runs else f"{p} is a sweep with no runs yet")
        raise ArchgradError(f"{p} is a directory but not a search run directory (no "
                            f"config.json or genotype.txt)")
    if parse is None:
        return value
    try:
        return parse(value)
    except GenotypeError:
        this = getattr(getattr(parse, "__self__", None), "name", None)
        name = value.strip()
        others = spaces_of(name, this)
        if not others:
            raise
        what = f"'{name}' is a genotype" if name.isidentifier() else "that is a genotype"
        raise GenotypeError(f"{what} of the {' and '.join(others)} space"
                            f"{'s' if len(others) > 1 else ''}" + (f", not of {this}" if this
                                                                  else "")
                            + f": give --space {others[0]}") from None


def spaces_of(name: str, but: str | None) -> list[str]:
    """The registered spaces other than ``but`` that read ``name``: a genotype they know by that
    name or a genotype string of their form."""
    found = []
    for space in SPACES.names():
        if space == but:
            continue
        try:
            get_space(space).genotype(name)
            found.append(space)
        except Exception:  # noqa: BLE001 - any space that cannot read it does not name it
            pass
    return found


def _run_search(value) -> dict | None:
    """The ``search`` settings of a search run directory given as a genotype (None: not a run
    directory); a damaged config.json is one line naming it."""
    p = existing_dir(value)
    if p is None or not (p / "config.json").is_file():
        return None
    try:
        cfg = read_json(p / "config.json")["search"]
        if isinstance(cfg, dict) and "space" in cfg:
            return cfg
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise ArchgradError(f"{p / 'config.json'} is damaged (no search.space)")


def run_data(value) -> tuple[str | None, str | None]:
    """The dataset and data directory a search run directory searched on (None, None: not a
    run directory): what ``train`` retrains on unless told otherwise."""
    cfg = _run_search(value) or {}
    dataset, data_dir = cfg.get("dataset"), cfg.get("data_dir")
    return (dataset if isinstance(dataset, str) else None,
            data_dir if isinstance(data_dir, str) else None)


def run_space(value: str) -> str | None:
    """The space of a search run directory given as a genotype (None: not a run directory)."""
    cfg = _run_search(value)
    return None if cfg is None else str(cfg["space"])


def _digest(cfg: TrainConfig) -> str:
    return config_digest({k: v for k, v in asdict(cfg).items() if k not in ("device",
                                                                          "data_dir")})


def _read_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    if not run_dir.is_dir():
        raise ArchgradError(f"cannot resume {run_dir}: no such directory")
    path = run_dir / "train_config.json"
    if not path.is_file():
        if (run_dir / "config.json").is_file():
            raise ArchgradError(f"cannot resume {run_dir} as a training run: it is a search "
                                f"(archgrad search --resume {run_dir}; to retrain its cell: "
                                f"archgrad train --genotype {run_dir})")
        raise ArchgradError(f"cannot resume {run_dir}: no train_config.json there (not a "
                            f"training run directory)")
    try:
        meta = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArchgradError(f"{path} is not valid JSON ({e})") from None
    fields = meta.get("train") if isinstance(meta, dict) else None
    if not isinstance(fields, dict):
        raise ArchgradError(f"{path} has no 'train' section")
    for k in fields:
        if k not in _TYPES:
            raise ArchgradError(f"{path}: unknown setting train.{k}")
    for k, t in _TYPES.items():
        if k not in fields and k not in ("data_dir", "subset", "eval_every", "device"):
            raise ArchgradError(f"{path}: setting train.{k} is missing")
        if k in fields and (not isinstance(fields[k], t) or (isinstance(fields[k], bool)
                                                             and t is int)):
            raise ArchgradError(f"{path}: train.{k} has the wrong type")
    return TrainConfig(**fields), meta


def _validate(cfg: TrainConfig) -> None:
    check_seed(cfg.seed)
    space_cls = SPACES.get(cfg.space)
    if space_cls.own_data:
        raise ArchgradError(f"space '{cfg.space}' has no training task for a stand-alone "
                            f"network (its weights are fixed); train a genotype of an image "
                            f"space")
    from ..search import resolve_dataset
    cfg.dataset = resolve_dataset(space_cls, cfg.dataset)
    takes = recipe_keys(space_cls)
    bad = [k for k in cfg.recipe if k not in takes]
    if bad:
        raise ArchgradError(f"training option {bad[0]!r} does not apply to space "
                            f"'{cfg.space}'; it takes {', '.join(takes)}")
    if cfg.subset is not None and (isinstance(cfg.subset, bool) or cfg.subset < 2):
        raise ArchgradError(f"--subset must be an integer of at least 2, got {cfg.subset!r}")
    if isinstance(cfg.eval_every, bool) or cfg.eval_every < 0:
        raise ArchgradError(f"eval_every must be an integer >= 0, got {cfg.eval_every!r}")
    cfg.recipe = check_options("training", cfg.recipe, {}, RECIPE_SPECS)
    genotype_source(cfg.genotype, get_space(cfg.space, **cfg.space_options).genotype)
    resolve_device(cfg.device)


def _new_config(space: str, genotype, dataset, seed, device, data_dir, subset, eval_every,
                space_options, options: dict) -> TrainConfig:
    """The checked configuration of a new training run (options: the space's and the
    recipe's); a search run directory as ``genotype`` brings its space's data."""
    space_cls = SPACES.get(space)
    sp = dict(space_options or {})
    recipe = {}
    for k, v in options.items():
        if k in space_cls.options:
            sp[k] = v
        elif k in recipe_keys(space_cls):
            recipe[k] = v
        elif k in IMAGE_KEYS and space_cls.modality == "sequence":
            raise ArchgradError(f"{k} applies to image networks only: {_IMAGE_ONLY[k]}; "
                                f"space '{space}' is a recurrent network")
        elif k in LM_KEYS and space_cls.modality != "sequence":
            raise ArchgradError(f"{k} applies to the recurrent language models only; "
                                f"space '{space}' is an image network")
        else:
            raise ArchgradError(
                f"unknown option {k!r}; space '{space}' accepts "
                f"{', '.join(sorted(space_cls.options))}; training accepts "
                f"{', '.join(recipe_keys(space_cls))}")
    if existing_dir(genotype) is not None:
        geno = genotype_source(str(genotype), get_space(space, **sp).genotype)
    else:
        geno = genotype_source(str(genotype)) if isinstance(genotype, (str, Path)) \
            else str(genotype)
    src_space = run_space(str(genotype)) if isinstance(genotype, (str, Path)) else None
    if src_space is not None and src_space != space:
        raise ArchgradError(f"{genotype} is a search of the '{src_space}' space; train it with "
                            f"--space {src_space}")
    if src_space is not None:  # a search's cell: retrained on the search's data by default
        run_dataset, run_dir_data = run_data(genotype)
        if dataset is None and run_dataset:
            dataset = run_dataset
            data_dir = data_dir if data_dir is not None else run_dir_data
    cfg = TrainConfig(space, str(geno), dataset, seed, str(device),
                      str(data_dir) if data_dir else None, subset, eval_every, sp, recipe)
    _validate(cfg)
    return cfg


def train(space: str, genotype, dataset: str | None = None, *, seed: int = 0, device: str = "auto",
          data_dir: str | None = None, subset: int | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, eval_every: int = 0, progress: bool = False,
          space_options: dict | None = None, log: Any = None, **options) -> dict[str, Any]:
    """Train ``genotype`` of ``space`` from scratch on ``dataset``; returns metrics (test accuracy,
    parameter count, per-epoch history). Options: the space's (``C``, ``N`` ...) and the
    recipe's (``epochs``, ``batch_size``, ``lr``, ``lr_min``, ``momentum``, ``weight_decay``,
    ``nesterov``, ``grad_clip``; image networks ``aux_weight``, ``drop_path``, ``cutout``;
    language models ``bptt``, ``variable_length``, ``asgd``, ``nonmono``, ``tar``, ``ar``,
    ``eval_batch_size``, ``test_batch_size``, ``loss_sum_over_time``). ``dataset``: default
    the search's (and its data directory) when ``genotype`` is a search run directory, else
    digits for image spaces, ptb for recurrent ones. ``log``: called with each epoch's
    record."""
    from . import dist
    dist.setup(device)  # under torchrun: join the process group (a no-op otherwise)
    device = dist.run_device(device)
    if resume is not None:
        run_dir = as_path(resume, "resume")
        cfg, meta = _read_config(run_dir)
        saved = _digest(cfg)
        resumed_config(cfg, run_dir / "train_config.json", _validate, device, data_dir)
        return _train(cfg, run_dir, True, progress, meta, saved, log)
    cfg = _new_config(space, genotype, dataset, seed, device, data_dir, subset, eval_every,
                      space_options, options)
    return _train(cfg, _new_out(out), False, progress, None, None, log)


def _new_out(out) -> Path | None:
    """The directory of a new training run, refused where it cannot be one."""
    run_dir = as_path(out, "out") if out is not None else None
    if run_dir is not None:
        check_out_dir(run_dir)
        if (run_dir / "train_config.json").exists() or \
                (run_dir / "train_checkpoint.pt").exists():
            raise ArchgradError(f"{run_dir} already holds a training run; use --resume "
                                f"{run_dir}")
    return run_dir


def plan_train(space: str, genotype, dataset: str | None = None, *, seed: int = 0,
               device: str = "auto", data_dir: str | None = None, subset: int | None = None,
               out: str | Path | None = None, eval_every: int = 0,
               space_options: dict | None = None, **options) -> dict[str, Any]:
    """What ``train(...)`` with the same arguments would run, checked as it checks it
    (genotype, options, data, output directory, memory) with nothing run or written: the
    resolved recipe and space options, steps, the network's parameters and the memory
    estimate."""
    from .memory import GB, available_bytes
    cfg = _new_config(space, genotype, dataset, seed, device, data_dir, subset, eval_every,
                      space_options, options)
    _new_out(out)
    dev = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    net_space = _space_for(cfg, data)
    recipe = _recipe(net_space, cfg)
    trainer = make_trainer(net_space, data, recipe, cfg, torch.device("cpu"))
    need = _check_memory(net_space, cfg, trainer, int(recipe["batch_size"]), dev)
    with torch.device("meta"):
        params = count_parameters(net_space.build(cfg.genotype))
    have = available_bytes(dev)
    steps = trainer.steps_per_epoch
    return {"space": cfg.space, "genotype": cfg.genotype, "dataset": cfg.dataset,
            "device": str(dev), "epochs": int(recipe["epochs"]),
            "batch_size": int(recipe["batch_size"]), "steps_per_epoch": steps,
            "steps": steps * int(recipe["epochs"]), "params": params, "memory_gb": need / GB,
            "available_gb": have / GB if have is not None else None, "recipe": recipe,
            "space_options": net_space.network_options()}


def _check_memory(space, cfg: TrainConfig, trainer, batch: int, dev) -> int:
    """Refuse a network that cannot fit on ``dev`` (estimated on the meta device); the bytes
    its training needs."""
    from .memory import guarded
    est = guarded(lambda: space.build(cfg.genotype), lambda m: m(trainer.meta_input(batch)),
                  dev, f"the {cfg.space} network at batch {batch}",
                  "use a smaller --batch-size or fewer --channels / --cells", optimizer_copies=1)
    return est.training_bytes(1)


def _recipe(space, cfg: TrainConfig) -> dict:
    recipe = dict(space.train_recipe())
    recipe.update(cfg.recipe)
    return recipe


def _space_for(cfg: TrainConfig, data) -> Any:
    opts = dict(cfg.space_options)
    accepted = SPACES.get(cfg.space).options
    for k, v in data.space_options().items():  # classes, channels, a corpus's vocabulary
        if k in accepted:
            opts.setdefault(k, v)
    return get_space(cfg.space, **opts)


def _train(cfg: TrainConfig, run_dir: Path | None, resuming: bool, progress: bool,
           meta: dict | None, saved_digest: str | None, log=None) -> dict:
    dev = resolve_device(cfg.device)
    if dev.type == "cpu":
        keep_freed_memory()
    seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    space = _space_for(cfg, data)
    recipe = _recipe(space, cfg)
    epochs, bs = int(recipe["epochs"]), int(recipe["batch_size"])
    trainer = make_trainer(space, data, recipe, cfg, dev)
    _check_memory(space, cfg, trainer, bs, dev)
    from . import dist
    ctx = dist.context()
    main = ctx.main
    progress = progress and main
    lock = None
    made = None  # a new run's directories: removed if its set-up fails before its config
    ck = None
    try:
        ctx.barrier()
        if run_dir is not None:
            if main:
                if resuming:
                    make_dir(run_dir)
                else:
                    run_dir, made = claim_dir(run_dir)
                lock = RunLock(run_dir).acquire()
                clean_temporaries(run_dir)
            ctx.barrier()
            path = run_dir / "train_checkpoint.pt"
            if resuming and path.exists():
                ck = _read_checkpoint(path, meta, saved_digest, epochs, ctx.world)
                if ck["epoch"] + 1 >= epochs and (run_dir / "train_result.json").is_file():
                    res = schemas.read(run_dir / "train_result.json")
                    res["history"] = list(ck["history"])
                    res["already_finished"] = True
                    return res
            if not resuming:
                meta = {"train": asdict(cfg), "run_id": ctx.gather_objects(uuid.uuid4().hex)[0],
                        "config_digest": _digest(cfg)}
        model = space.build(cfg.genotype).to(dev)
        if ctx.active:
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    torch.distributed.broadcast(t.data, 0)
        n_params = count_parameters(model)
        history: list[dict] = []
        start = 0
        if run_dir is not None and not resuming and main:
            atomic_write_json(run_dir / "train_config.json", {
                **meta, "recipe": recipe, "archgrad": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(dev), "params": n_params,
                "world_size": ctx.world, "dataset": data.describe()})
        if ck is not None:
            try:
                model.load_state_dict(ck["model"])
                trainer.load_state_dict(ck.get("trainer", {}))
                opt = trainer.optimizer(model, recipe["lr"])
                opt.load_state_dict(ck["optimizer"])
                ranks = ck.get("rng_ranks")
                set_rng_state(ranks[ctx.rank] if ranks else ck["rng"])
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
                raise ArchgradError(f"{run_dir / 'train_checkpoint.pt'} does not fit this "
                                    f"network ({str(e).splitlines()[0][:160]})") from None
            history, start = list(ck["history"]), ck["epoch"] + 1
        else:
            opt = trainer.optimizer(model, recipe["lr"])
        if run_dir is not None and resuming and main:
            _write_logs(run_dir, history)

        bar = None
        if progress:
            from tqdm.auto import tqdm
            steps = trainer.steps_per_epoch
            bar = tqdm(total=epochs * steps, initial=start * steps, unit="step",
                       dynamic_ncols=True, desc=f"train {cfg.space}/{cfg.dataset}")
        try:
            for epoch in range(start, epochs):
                opt = _epoch(trainer, model, opt, recipe, epoch, epochs, history, bar, log,
                             run_dir, main, meta, ctx)
        finally:
            if bar is not None:
                bar.close()
        return _result(cfg, space, trainer, model, n_params, epochs, history,
                       run_dir if main else None)
    finally:
        if lock is not None:
            if made is not None and not (run_dir / "train_config.json").exists():
                undo_set_up(run_dir, made, lock)  # the set-up failed: leave nothing
            lock.release()


def _read_checkpoint(path: Path, meta: dict, saved_digest: str | None, epochs: int,
                     world: int) -> dict:
    """A training checkpoint to resume from, checked against its run and configuration."""
    ck = load_checkpoint(path, required=("epoch", "model", "optimizer", "history", "rng"))
    if meta.get("run_id") is not None and ck.get("run_id") != meta.get("run_id"):
        raise ArchgradError(f"{path} belongs to another run")
    if ck.get("config_digest") is not None and ck["config_digest"] != saved_digest:
        raise ArchgradError(f"{path.parent / 'train_config.json'} was changed after "
                            f"training started (it no longer matches {path.name})")
    if not isinstance(ck["epoch"], int) or not -1 <= ck["epoch"] < epochs:
        raise ArchgradError(f"{path} is damaged (epoch {ck['epoch']!r})")
    if int(ck.get("world_size", 1)) != world:
        raise ArchgradError(f"{path.parent} was trained by {ck.get('world_size', 1)} "
                            f"process(es); resume it with the same number")
    return ck


def _epoch(trainer, model, opt, recipe: dict, epoch: int, epochs: int, history: list[dict],
           bar, log, run_dir: Path | None, main: bool, meta: dict | None, ctx):
    """One training epoch: its steps, the divergence check, its record, its checkpoint (rank 0
    writes it). Returns the optimizer (a trainer may switch it)."""
    t0 = time.perf_counter()
    steps = trainer.steps_per_epoch
    lr = epoch_lr(recipe, epoch, epochs)
    stats, first_bad = trainer.train_epoch(model, opt, epoch, lr, bar)
    stats = ctx.average_floats(stats)
    ctx.broadcast_buffers(model)
    if ctx.any_true(first_bad >= 0 or not all(torch.isfinite(p).all()
                                              for p in model.parameters())):
        at = first_bad + 1 if first_bad >= 0 else steps
        kept = f"the checkpoint of epoch {epoch} is kept" if epoch > 0 and \
            run_dir is not None else "no checkpoint was written"
        raise DivergenceError(
            f"training diverged in epoch {epoch + 1}, step {at}: the loss or its "
            f"gradient is not finite; {kept}, no result is written; try a smaller "
            f"learning rate (lr {recipe['lr']:g})")
    rec = {"epoch": epoch + 1, "lr": lr, **stats}
    opt = trainer.end_epoch(model, opt, epoch, lr, rec)
    rec["time_s"] = round(time.perf_counter() - t0, 3)
    history.append(rec)
    if bar is not None:
        post = {k: f"{rec[k]:.3f}" if "loss" in k else f"{rec[k]:.1f}"
                for k in ("train_loss", "train_acc", "train_ppl", "valid_ppl") if k in rec}
        bar.set_postfix(post)
        if "test_acc" in rec:
            bar.write(f"epoch {rec['epoch']}/{epochs}  train_loss {rec['train_loss']:.3f}  "
                      f"train_acc {rec['train_acc']:.1f}%  test_acc {rec['test_acc']:.2f}%")
    if log is not None:
        log(rec)
    rngs = ctx.gather_objects(rng_state()) if run_dir is not None else None  # every rank
    if run_dir is not None and main:
        save_checkpoint(run_dir / "train_checkpoint.pt", {
            "epoch": epoch, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "trainer": trainer.state_dict(),
            "history": history, "rng": rngs[0], "world_size": ctx.world,
            **({"rng_ranks": rngs} if ctx.active else {}),
            "run_id": meta["run_id"], "config_digest": meta["config_digest"]},
            keep_previous=True)
        _write_logs(run_dir, history)
    return opt


def _result(cfg: TrainConfig, space, trainer, model, n_params: int, epochs: int,
            history: list[dict], run_dir: Path | None) -> dict:
    """The trained network's final figures; in ``run_dir`` (rank 0's) model.pt, model.pt2
    and train_result.json."""
    result = {"space": cfg.space, "genotype": cfg.genotype, "dataset": cfg.dataset,
              "params": n_params, "epochs": epochs, "history": history,
              "train_time_s": round(sum(r["time_s"] for r in history), 2)}
    result.update(trainer.final(model))
    if run_dir is not None:
        save_model(model, space, cfg.genotype, run_dir / "model.pt")
        example = trainer.example(model)
        if example is not None:
            try:
                export_program(model, example, run_dir / "model.pt2")
                result["exported"] = "model.pt2"
            except Exception as e:  # an export failure must never cost the result
                atomic_write_text(run_dir / "export.error.txt", f"{type(e).__name__}: {e}\n")
        atomic_write_json(run_dir / "train_result.json",
                          {k: v for k, v in result.items() if k != "history"})
    return result


def epoch_lr(recipe: dict, epoch: int, epochs: int) -> float:
    """The learning rate of an epoch: cosine from lr to lr_min (DARTS's CIFAR recipe), or
    ``lr_schedule="exponential"``: lr x lr_gamma^epoch (DARTS's ImageNet recipe, StepLR with
    period 1 and gamma 0.97)."""
    if recipe.get("lr_schedule") == "exponential":
        return float(recipe["lr"]) * float(recipe.get("lr_gamma", 0.97)) ** epoch
    return cosine(recipe["lr"], recipe.get("lr_min", 0.0), epoch, epochs)


def _write_logs(run_dir: Path, history: list[dict]) -> None:
    import csv
    import io
    write_jsonl(run_dir / "train_metrics.jsonl", history)
    cols = [c for c in ("epoch", "lr", "train_loss", "train_acc", "train_ppl", "valid_loss",
                        "valid_ppl", "test_loss", "test_acc", "asgd", "time_s")
            if any(c in r for r in history)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow(r)
    atomic_write_text(run_dir / "train_metrics.csv", buf.getvalue())
