"""``train(space, genotype, dataset=...)``: train a derived architecture from scratch.

SGD with a cosine learning-rate schedule (a pure function of the epoch), checkpoints after every
epoch in the run directory, exact resume, test accuracy at the end. The default recipe is the
space's (NAS-Bench-201's own for ``nb201``).
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .data import BatchLoader, load_dataset
from .errors import ArchgradError
from .ops import count_parameters
from .rundir import (
    atomic_write_json,
    load_checkpoint,
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

RECIPE_KEYS = ("lr", "lr_min", "momentum", "weight_decay", "nesterov", "grad_clip",
               "batch_size", "epochs", "aux_weight", "drop_path", "cutout")


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


def genotype_source(value: str) -> str:
    """A genotype string, or the final genotype of a search run directory."""
    p = Path(value)
    if p.is_dir():
        if (p / "genotype.txt").is_file():
            return (p / "genotype.txt").read_text().strip()
        raise ArchgradError(f"{p} has no genotype.txt (the search has not finished; resume it "
                            f"with archgrad search --resume {p})")
    return value


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


def train(space: str, genotype, dataset: str = "digits", *, seed: int = 0, device: str = "auto",
          data_dir: str | None = None, subset: int | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, eval_every: int = 0, progress: bool = False,
          space_options: dict | None = None, **options) -> dict[str, Any]:
    """Train ``genotype`` of ``space`` from scratch on ``dataset``; returns metrics (test accuracy,
    parameter count, per-epoch history). Options: the space's (``C``, ``N`` ...) and the
    recipe's (``epochs``, ``batch_size``, ``lr``, ``lr_min``, ``momentum``, ``weight_decay``,
    ``nesterov``, ``grad_clip``)."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "train_config.json").is_file():
            raise ArchgradError(f"cannot resume {run_dir}: no train_config.json there")
        cfg = TrainConfig(**read_json(run_dir / "train_config.json")["train"])
        if device != "auto":
            cfg.device = device
        if data_dir is not None:
            cfg.data_dir = str(data_dir)
    else:
        space_cls = SPACES.get(space)
        if space_cls.own_data:
            raise ArchgradError(f"space '{space}' has no training task for a stand-alone network "
                                f"(its weights are fixed); train a genotype of an image space")
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
        geno = genotype_source(str(genotype)) if not hasattr(genotype, "ops") else str(genotype)
        get_space(space, **{k: v for k, v in sp.items()}).genotype(geno)  # validate early
        cfg = TrainConfig(space, str(geno), dataset, seed, str(device),
                          str(data_dir) if data_dir else None, subset, eval_every, sp, recipe)
        run_dir = Path(out) if out is not None else None
        if run_dir is not None and (run_dir / "train_checkpoint.pt").exists():
            raise ArchgradError(f"{run_dir} already holds a training run; use --resume {run_dir}")
    return _train(cfg, run_dir, resume is not None, progress)


def _train(cfg: TrainConfig, run_dir: Path | None, resuming: bool, progress: bool) -> dict:
    dev = resolve_device(cfg.device)
    if dev.type == "cpu":
        keep_freed_memory()
    seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    opts = dict(cfg.space_options)
    accepted = SPACES.get(cfg.space).options
    if "num_classes" in accepted:
        opts.setdefault("num_classes", data.num_classes)
    if "in_channels" in accepted:
        opts.setdefault("in_channels", data.in_channels)
    space = get_space(cfg.space, **opts)
    recipe = dict(space.train_recipe())
    recipe.update(cfg.recipe)
    epochs, bs = int(recipe["epochs"]), int(recipe["batch_size"])
    if epochs < 1 or bs < 1:
        raise ArchgradError("epochs and batch size must be positive integers")
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
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            atomic_write_json(run_dir / "train_config.json", {
                "train": asdict(cfg), "recipe": recipe, "archgrad": __version__,
                "torch": torch.__version__, "python": platform.python_version(),
                "device": str(dev), "params": n_params, "dataset": data.describe()})
    if resuming:
        ck = load_checkpoint(run_dir / "train_checkpoint.pt")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, start = ck["history"], ck["epoch"] + 1
        set_rng_state(ck["rng"])

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
            n = 0
            for x, y in train_loader.epoch(epoch):
                out = model(x)
                aux = None
                if isinstance(out, tuple):
                    out, aux = out
                loss = loss_fn(out, y)
                total = loss + aux_w * loss_fn(aux, y) if aux is not None and aux_w else loss
                opt.zero_grad(set_to_none=True)
                total.backward()
                if recipe.get("grad_clip"):
                    nn.utils.clip_grad_norm_(model.parameters(), recipe["grad_clip"])
                opt.step()
                loss_sum += loss.detach() * len(y)
                correct += (out.argmax(-1) == y).sum()
                n += len(y)
                if bar is not None:
                    bar.update(1)
            rec = {"epoch": epoch + 1, "lr": lr, "train_loss": float(loss_sum) / n,
                   "train_acc": 100.0 * float(correct) / n}
            if test_loader is not None and cfg.eval_every and \
                    ((epoch + 1) % cfg.eval_every == 0) and epoch + 1 < epochs:
                ev = evaluate_plain(model, test_loader, loss_fn)
                rec.update(test_loss=ev["loss"], test_acc=ev["acc"])
            rec["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['train_loss']:.3f}", acc=f"{rec['train_acc']:.1f}")
            if run_dir is not None:
                save_checkpoint(run_dir / "train_checkpoint.pt", {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "history": history, "rng": rng_state()})
                write_jsonl(run_dir / "train_metrics.jsonl", history)
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
        torch.save(model.state_dict(), run_dir / ".model.pt.tmp")
        (run_dir / ".model.pt.tmp").replace(run_dir / "model.pt")
        atomic_write_json(run_dir / "train_result.json",
                          {k: v for k, v in result.items() if k != "history"})
    return result
