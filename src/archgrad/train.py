"""``train(space, genotype, dataset=...)``: train a derived architecture from scratch.

SGD with a cosine learning-rate schedule (a pure function of the epoch), checkpoints after every
epoch in the run directory, exact resume, test accuracy at the end. The default recipe is the
space's (NAS-Bench-201's own for ``nb201``). A training run directory holds
``train_config.json``, ``train_metrics.jsonl`` / ``.csv``, ``train_checkpoint.pt`` and at the
end ``train_result.json``, ``model.pt`` (the state_dict with the genotype and the space's
options: ``archgrad.load_model``) and ``model.pt2`` (a stand-alone ``torch.export`` program that
loads with PyTorch alone: ``torch.export.load(path).module()``).
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
from torch import nn

from . import __version__
from .data import BatchLoader, load_dataset
from .errors import ArchgradError, DivergenceError
from .ops import count_parameters
from .options import Spec, check_options
from .rundir import (
    RunLock,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_out_dir,
    check_seed,
    clean_temporaries,
    config_digest,
    load_checkpoint,
    make_dir,
    read_json,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_jsonl,
)
from .runtime import keep_freed_memory
from .search import resolve_device
from .spaces import SPACES, get_space
from .strategy import cosine

#: the training recipe's options, their kinds and ranges
RECIPE_SPECS = {
    "lr": Spec("float", lo=0.0, lo_open=True), "lr_min": Spec("float", lo=0.0),
    "momentum": Spec("float", lo=0.0, hi=0.999999), "weight_decay": Spec("float", lo=0.0),
    "nesterov": Spec("bool"), "grad_clip": Spec("float", none=True, lo=0.0, lo_open=True),
    "batch_size": Spec("int", lo=1, hi=1_000_000), "epochs": Spec("int", lo=1, hi=100_000),
    "aux_weight": Spec("float", lo=0.0), "drop_path": Spec("float", lo=0.0, hi=0.99),
    "cutout": Spec("int", lo=0, hi=4096),
}
RECIPE_KEYS = tuple(RECIPE_SPECS)


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


def genotype_source(value: str) -> str:
    """A genotype string, or the final genotype of a search run directory."""
    if not isinstance(value, str) or not value.strip():
        raise ArchgradError("the genotype is empty; give a genotype string, a named genotype "
                            "(DARTS_V2, ...) or a search run directory")
    p = Path(value)
    if p.is_dir():
        if (p / "genotype.txt").is_file():
            return (p / "genotype.txt").read_text().strip()
        if (p / "config.json").is_file():
            raise ArchgradError(f"{p} has no genotype.txt (the search has not finished; resume "
                                f"it with archgrad search --resume {p})")
        raise ArchgradError(f"{p} is a directory but not a search run directory (no "
                            f"config.json or genotype.txt)")
    return value


def run_space(value: str) -> str | None:
    """The space of a search run directory given as a genotype (None: not a run directory)."""
    p = Path(value) if isinstance(value, str) and value.strip() else None
    if p is not None and p.is_dir() and (p / "config.json").is_file():
        try:
            return str(read_json(p / "config.json")["search"]["space"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ArchgradError(f"{p / 'config.json'} is damaged (no search.space)") from None
    return None


@torch.no_grad()
def evaluate_plain(model: nn.Module, loader: BatchLoader, loss_fn) -> dict[str, float]:
    was = model.training
    model.eval()
    n, loss_sum, correct = 0, 0.0, 0.0
    for x, y in loader.epoch(0):
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss_sum += float(loss_fn(out, y)) * len(y)
        correct += float((out.argmax(-1) == y).sum())
        n += len(y)
    model.train(was)
    return {"loss": loss_sum / max(n, 1), "acc": 100.0 * correct / max(n, 1)}


def _digest(cfg: TrainConfig) -> str:
    return config_digest({k: v for k, v in asdict(cfg).items() if k not in ("device",
                                                                          "data_dir")})


def _read_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    if not run_dir.is_dir():
        raise ArchgradError(f"cannot resume {run_dir}: no such directory")
    path = run_dir / "train_config.json"
    if not path.is_file():
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
    from .data import DATASETS
    DATASETS.get(cfg.dataset)
    if cfg.subset is not None and (isinstance(cfg.subset, bool) or cfg.subset < 2):
        raise ArchgradError(f"--subset must be an integer of at least 2, got {cfg.subset!r}")
    if isinstance(cfg.eval_every, bool) or cfg.eval_every < 0:
        raise ArchgradError(f"eval_every must be an integer >= 0, got {cfg.eval_every!r}")
    cfg.recipe = check_options("training", cfg.recipe, {}, RECIPE_SPECS)
    get_space(cfg.space, **cfg.space_options).genotype(cfg.genotype)
    resolve_device(cfg.device)


def train(space: str, genotype, dataset: str = "digits", *, seed: int = 0, device: str = "auto",
          data_dir: str | None = None, subset: int | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, eval_every: int = 0, progress: bool = False,
          space_options: dict | None = None, log: Any = None, **options) -> dict[str, Any]:
    """Train ``genotype`` of ``space`` from scratch on ``dataset``; returns metrics (test accuracy,
    parameter count, per-epoch history). Options: the space's (``C``, ``N`` ...) and the
    recipe's (``epochs``, ``batch_size``, ``lr``, ``lr_min``, ``momentum``, ``weight_decay``,
    ``nesterov``, ``grad_clip``, ``aux_weight``, ``drop_path``, ``cutout``). ``log``: called
    with each epoch's record."""
    if resume is not None:
        run_dir = Path(resume)
        cfg, meta = _read_config(run_dir)
        saved = _digest(cfg)
        if device != "auto":
            cfg.device = device
        if data_dir is not None:
            cfg.data_dir = str(data_dir)
        try:
            _validate(cfg)
        except ArchgradError as e:
            raise ArchgradError(f"{run_dir / 'train_config.json'}: {e}") from None
        return _train(cfg, run_dir, True, progress, meta, saved, log)
    space_cls = SPACES.get(space)
    sp = dict(space_options or {})
    recipe = {}
    for k, v in options.items():
        if k in space_cls.options:
            sp[k] = v
        elif k in RECIPE_KEYS:
            recipe[k] = v
        else:
            raise ArchgradError(
                f"unknown option {k!r}; space '{space}' accepts "
                f"{', '.join(sorted(space_cls.options))}; training accepts "
                f"{', '.join(RECIPE_KEYS)}")
    geno = genotype_source(str(genotype)) if isinstance(genotype, (str, Path)) \
        else str(genotype)
    src_space = run_space(str(genotype)) if isinstance(genotype, (str, Path)) else None
    if src_space is not None and src_space != space:
        raise ArchgradError(f"{genotype} is a search of the '{src_space}' space; train it with "
                            f"--space {src_space}")
    cfg = TrainConfig(space, str(geno), dataset, seed, str(device),
                      str(data_dir) if data_dir else None, subset, eval_every, sp, recipe)
    _validate(cfg)
    run_dir = Path(out) if out is not None else None
    if run_dir is not None:
        check_out_dir(run_dir)
        if (run_dir / "train_config.json").exists() or \
                (run_dir / "train_checkpoint.pt").exists():
            raise ArchgradError(f"{run_dir} already holds a training run; use --resume "
                                f"{run_dir}")
    return _train(cfg, run_dir, False, progress, None, None, log)


def _recipe(space, cfg: TrainConfig) -> dict:
    recipe = dict(space.train_recipe())
    recipe.update(cfg.recipe)
    return recipe


def _space_for(cfg: TrainConfig, data) -> Any:
    opts = dict(cfg.space_options)
    accepted = SPACES.get(cfg.space).options
    if "num_classes" in accepted:
        opts.setdefault("num_classes", data.num_classes)
    if "in_channels" in accepted:
        opts.setdefault("in_channels", data.in_channels)
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
    from .memory import guarded
    size = data.image_size
    guarded(lambda: space.build(cfg.genotype),
            lambda m: m(torch.empty(bs, data.in_channels, size, size, device="meta")),
            dev, f"the {cfg.space} network at batch {bs}",
            "use a smaller --batch-size or fewer --channels / --cells", optimizer_copies=1)
    lock = None
    ck = None
    try:
        if run_dir is not None:
            make_dir(run_dir)
            lock = RunLock(run_dir).acquire()
            clean_temporaries(run_dir)
            path = run_dir / "train_checkpoint.pt"
            if resuming and path.exists():
                ck = load_checkpoint(path, required=("epoch", "model", "optimizer", "history",
                                                     "rng"))
                if meta.get("run_id") is not None and ck.get("run_id") != meta.get("run_id"):
                    raise ArchgradError(f"{path} belongs to another run")
                if ck.get("config_digest") is not None and ck["config_digest"] != saved_digest:
                    raise ArchgradError(f"{run_dir / 'train_config.json'} was changed after "
                                        f"training started (it no longer matches {path.name})")
                if not isinstance(ck["epoch"], int) or not -1 <= ck["epoch"] < epochs:
                    raise ArchgradError(f"{path} is damaged (epoch {ck['epoch']!r})")
                if ck["epoch"] + 1 >= epochs and (run_dir / "train_result.json").is_file():
                    try:
                        res = read_json(run_dir / "train_result.json")
                    except (OSError, ValueError) as e:
                        raise ArchgradError(f"{run_dir / 'train_result.json'} is damaged "
                                            f"({e})") from None
                    res["history"] = list(ck["history"])
                    res["already_finished"] = True
                    return res
            if not resuming:
                meta = {"train": asdict(cfg), "run_id": uuid.uuid4().hex,
                        "config_digest": _digest(cfg)}
        model = space.build(cfg.genotype).to(dev)
        n_params = count_parameters(model)
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                              weight_decay=recipe["weight_decay"], nesterov=recipe["nesterov"])
        kw = dict(mean=data.mean, std=data.std, device=dev)
        # cutout belongs to the CIFAR recipe: only on datasets augmented the CIFAR way
        cutout = int(recipe.get("cutout", 0) or 0) if data.augment else 0
        train_loader = BatchLoader(data.x_train, data.y_train, bs, shuffle=True,
                                   augment=data.augment, drop_last=len(data.y_train) > bs,
                                   seed=cfg.seed, cutout=cutout, **kw)
        test_loader = BatchLoader(data.x_test, data.y_test, max(bs, 256), **kw) \
            if len(data.y_test) else None
        loss_fn = space.loss
        history: list[dict] = []
        start = 0
        if run_dir is not None and not resuming:
            atomic_write_json(run_dir / "train_config.json", {
                **meta, "recipe": recipe, "archgrad": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(dev), "params": n_params,
                "dataset": data.describe()})
        if ck is not None:
            try:
                model.load_state_dict(ck["model"])
                opt.load_state_dict(ck["optimizer"])
                set_rng_state(ck["rng"])
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
                raise ArchgradError(f"{run_dir / 'train_checkpoint.pt'} does not fit this "
                                    f"network ({str(e).splitlines()[0][:160]})") from None
            history, start = list(ck["history"]), ck["epoch"] + 1
        if run_dir is not None and resuming:
            _write_logs(run_dir, history)

        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs * len(train_loader), initial=start * len(train_loader),
                       unit="step", dynamic_ncols=True, desc=f"train {cfg.space}/{cfg.dataset}")
        aux_w = float(recipe.get("aux_weight", 0.0) or 0.0)
        try:
            for epoch in range(start, epochs):
                t0 = time.perf_counter()
                lr = cosine(recipe["lr"], recipe["lr_min"], epoch, epochs)
                for g in opt.param_groups:
                    g["lr"] = lr
                if hasattr(model, "drop_path_prob"):
                    model.drop_path_prob = float(recipe.get("drop_path", 0.0)) * epoch / epochs
                model.train()
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                correct = torch.zeros((), dtype=torch.float64, device=dev)
                first_bad = torch.full((), -1, dtype=torch.long, device=dev)
                n = 0
                for step, (x, y) in enumerate(train_loader.epoch(epoch)):
                    out = model(x)
                    aux = None
                    if isinstance(out, tuple):
                        out, aux = out
                    loss = loss_fn(out, y)
                    total = loss + aux_w * loss_fn(aux, y) if aux is not None and aux_w \
                        else loss
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    norm = nn.utils.clip_grad_norm_(model.parameters(),
                                                    recipe.get("grad_clip") or float("inf"))
                    bad = ~(torch.isfinite(loss.detach()) & torch.isfinite(norm))
                    first_bad = torch.where(bad & (first_bad < 0),
                                            torch.full_like(first_bad, step), first_bad)
                    opt.step()
                    loss_sum += loss.detach() * len(y)
                    correct += (out.argmax(-1) == y).sum()
                    n += len(y)
                    if bar is not None:
                        bar.update(1)
                if int(first_bad) >= 0 or not all(torch.isfinite(p).all()
                                                  for p in model.parameters()):
                    at = int(first_bad) + 1 if int(first_bad) >= 0 else len(train_loader)
                    kept = f"the checkpoint of epoch {epoch} is kept" if epoch > 0 and \
                        run_dir is not None else "no checkpoint was written"
                    raise DivergenceError(
                        f"training diverged in epoch {epoch + 1}, step {at}: the loss or its "
                        f"gradient is not finite; {kept}, no result is written; try a smaller "
                        f"learning rate (lr {recipe['lr']:g})")
                rec = {"epoch": epoch + 1, "lr": lr, "train_loss": float(loss_sum) / n,
                       "train_acc": 100.0 * float(correct) / n}
                if test_loader is not None and cfg.eval_every and \
                        ((epoch + 1) % cfg.eval_every == 0) and epoch + 1 < epochs:
                    ev = evaluate_plain(model, test_loader, loss_fn)
                    rec.update(test_loss=ev["loss"], test_acc=ev["acc"])
                rec["time_s"] = round(time.perf_counter() - t0, 3)
                history.append(rec)
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['train_loss']:.3f}",
                                    acc=f"{rec['train_acc']:.1f}")
                    if "test_acc" in rec:
                        bar.write(f"epoch {rec['epoch']}/{epochs}  train_loss "
                                  f"{rec['train_loss']:.3f}  train_acc {rec['train_acc']:.1f}%  "
                                  f"test_acc {rec['test_acc']:.2f}%")
                if log is not None:
                    log(rec)
                if run_dir is not None:
                    save_checkpoint(run_dir / "train_checkpoint.pt", {
                        "epoch": epoch, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "history": history, "rng": rng_state(),
                        "run_id": meta["run_id"], "config_digest": meta["config_digest"]})
                    _write_logs(run_dir, history)
        finally:
            if bar is not None:
                bar.close()

        result = {"space": cfg.space, "genotype": cfg.genotype, "dataset": cfg.dataset,
                  "params": n_params, "epochs": epochs, "history": history,
                  "train_time_s": round(sum(r["time_s"] for r in history), 2)}
        if test_loader is not None:
            ev = evaluate_plain(model, test_loader, loss_fn)
            result.update(test_loss=ev["loss"], test_acc=ev["acc"])
        if run_dir is not None:
            save_model(model, space, cfg.genotype, run_dir / "model.pt")
            try:
                x = data.x_train[:2].float().to(dev)
                export_program(model, x, run_dir / "model.pt2")
                result["exported"] = "model.pt2"
            except Exception as e:  # an export failure must never cost the result
                atomic_write_text(run_dir / "export.error.txt", f"{type(e).__name__}: {e}\n")
            atomic_write_json(run_dir / "train_result.json",
                              {k: v for k, v in result.items() if k != "history"})
        return result
    finally:
        if lock is not None:
            lock.release()


def _write_logs(run_dir: Path, history: list[dict]) -> None:
    import csv
    import io
    write_jsonl(run_dir / "train_metrics.jsonl", history)
    cols = [c for c in ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                        "time_s") if any(c in r for r in history)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow(r)
    atomic_write_text(run_dir / "train_metrics.csv", buf.getvalue())


# ---- export -----------------------------------------------------------------------------------
def save_model(model: nn.Module, space, genotype: str, path: Path) -> None:
    """The state_dict with what rebuilds its network: ``archgrad.load_model(path)``."""
    import io
    buf = io.BytesIO()
    torch.save({"format": "archgrad-model-1", "space": space.name, "genotype": str(genotype),
                "space_options": dict(space.config), "state_dict": model.state_dict()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """A stand-alone program of ``model`` in eval mode (``torch.export``; loads with PyTorch
    alone: ``torch.export.load(path).module()``); the batch size is dynamic."""
    import io
    was = model.training
    model.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        try:
            ep = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        except Exception:  # a network whose graph specialises on the batch: export it fixed
            ep = torch.export.export(model, (example,))
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        atomic_write_bytes(path, buf.getvalue())
    finally:
        model.train(was)


def load_model(path: str | Path) -> nn.Module:
    """The network saved in ``model.pt`` (by ``train`` or ``archgrad export``), weights loaded."""
    path = Path(path)
    ck = load_checkpoint(path, required=("format", "space", "genotype", "state_dict"))
    if ck.get("format") != "archgrad-model-1":
        raise ArchgradError(f"{path} is not an archgrad model file")
    net = get_space(ck["space"], **ck.get("space_options", {})).build(ck["genotype"])
    try:
        net.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise ArchgradError(f"{path} does not fit its genotype's network "
                            f"({str(e).splitlines()[0][:160]})") from None
    return net
