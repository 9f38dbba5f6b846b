"""``search(...)``: run a strategy on a space and a dataset; write and resume run directories.

A run directory holds:

* ``config.json``   the resolved configuration (everything needed to rebuild the run);
* ``metrics.jsonl`` one JSON record per epoch (losses, accuracies, learning rate, architecture
  probabilities, entropy, derived genotype, benchmark figures, gradient-estimate variance);
* ``checkpoint.pt`` weights, architecture parameters, optimizer states, RNG states, epoch and the
  history so far — written atomically after every epoch;
* ``genotype.txt`` / ``result.json`` when the search has finished.

``search(resume=RUN_DIR)`` continues from the last checkpoint; on CPU the result equals that of
an uninterrupted run with the same seed, bit for bit.
"""
from __future__ import annotations

import itertools
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .arch import entropy
from .bn import recalibrated
from .data import DATASETS, load_dataset
from .errors import ArchgradError
from .methods import STRATEGIES, accepted_options, make_strategy
from .rundir import (
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    read_json,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_jsonl,
)
from .spaces import SPACES, Genotype, get_space
from .strategy import Strategy
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


@dataclass
class SearchResult:
    genotype: Genotype
    history: list[dict]
    final: dict
    config: SearchConfig
    run_dir: Path | None = None
    probs: dict[str, list[list[float]]] = field(default_factory=dict)

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
    """Route flat keyword options to the space or the strategy that accepts them."""
    space_keys = set(SPACES.get(space).options)
    strat_keys = set(accepted_options(strategy))
    sp, st = {}, {}
    for k, v in options.items():
        if k in space_keys and k in strat_keys:
            raise ArchgradError(f"option {k!r} is ambiguous between space '{space}' and strategy "
                                f"'{strategy}'; pass it in space_options or strategy_options")
        if k in space_keys:
            sp[k] = v
        elif k in strat_keys:
            st[k] = v
        else:
            raise ArchgradError(
                f"unknown option {k!r}; space '{space}' accepts {', '.join(sorted(space_keys))}; "
                f"strategy '{strategy}' accepts {', '.join(sorted(strat_keys))}")
    return sp, st


def with_arch_defaults(space_cls, strategy: str, options: dict) -> dict:
    """The space's architecture-optimizer defaults (the toy task: AdvantageNAS's Adam 1e-3)
    for a strategy that steps with Adam, where the user has not set them."""
    out = dict(options)
    if space_cls.arch_defaults and STRATEGIES.get(strategy).adam:
        for k, v in space_cls.arch_defaults.items():
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
    """The dataset a search of this space uses: image spaces take a registered dataset
    (default digits); a space with its own data (the toy task) takes none."""
    if space_cls.own_data:
        if dataset not in (None, space_cls.own_data):
            raise ArchgradError(f"space '{space_cls.name}' generates its own data "
                                f"('{space_cls.own_data}'); drop --dataset {dataset}")
        return space_cls.own_data
    dataset = dataset or "digits"
    DATASETS.get(dataset)
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
def search(space: str = "nb201", strategy: str = "darts", dataset: str | None = None, *,
           epochs: int | None = None, batch_size: int | None = None, seed: int = 0,
           device: str = "auto", data_dir: str | None = None, subset: int | None = None,
           out: str | Path | None = None, resume: str | Path | None = None,
           eval_every: int = 1, space_options: dict | None = None,
           strategy_options: dict | None = None, progress: bool = False,
           callbacks: Sequence[Callable[[dict, dict], None]] = (), **options) -> SearchResult:
    """Search ``space`` with ``strategy`` on ``dataset``; returns the final genotype and the
    per-epoch history.

    Extra keyword ``options`` go to the space (``C``, ``N``, ``include_none`` ...) or the strategy
    (``arch_lr``, ``warmup_epochs`` ...) that accepts them. ``out`` names a run directory to
    write; ``resume`` continues one. ``callbacks`` are called after every epoch with the epoch's
    record and a dict of live objects (``model``, ``strategy``, ``space``).
    """
    if resume is not None:
        given = {k: v for k, v in dict(space=space != "nb201", strategy=strategy != "darts",
                                       dataset=dataset is not None, epochs=epochs is not None,
                                       batch_size=batch_size is not None, seed=seed != 0,
                                       subset=subset is not None, out=out is not None,
                                       options=bool(options or space_options
                                                    or strategy_options)).items() if v}
        if given:
            raise ArchgradError(
                f"--resume takes the configuration from RUN_DIR/config.json; drop "
                f"{', '.join('--' + k.replace('_', '-') for k in given)}")
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise ArchgradError(f"cannot resume {run_dir}: no config.json there (not a run "
                                f"directory written by archgrad search)")
        saved = read_json(run_dir / "config.json")
        cfg = SearchConfig(**saved["search"])
        if device != "auto":
            cfg.device = device
        if data_dir is not None:
            cfg.data_dir = str(data_dir)
    else:
        space_cls = SPACES.get(space)
        STRATEGIES.get(strategy)
        dataset = resolve_dataset(space_cls, dataset)
        sp, st = split_options(space, strategy, options)
        sp.update(space_options or {})
        st.update(strategy_options or {})
        st = with_arch_defaults(space_cls, strategy, st)
        strat = make_strategy(strategy, **st)
        sp = with_space_defaults(space_cls, sp, strat)
        if epochs is None:  # a quick dataset's budget, else the strategy's paper's, else 50
            epochs = (space_cls.own_data_epochs if space_cls.own_data else
                      DATASETS.get(dataset).search_epochs) or strat.default_epochs \
                or DEFAULT_EPOCHS
        if batch_size is None:  # likewise
            batch_size = space_cls.default_batch_size if space_cls.own_data else \
                (DATASETS.get(dataset).search_batch_size or strat.default_batch_size
                 or space_cls.default_batch_size)
        for name, v in (("epochs", epochs), ("batch size", batch_size)):
            if not isinstance(v, int) or v < 1:
                raise ArchgradError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(eval_every, int) or eval_every < 0:
            raise ArchgradError(f"eval_every must be an integer >= 0, got {eval_every!r}")
        need = strat.min_epochs
        if epochs < need:
            raise ArchgradError(f"strategy '{strategy}' needs at least {need} epochs, got {epochs}")
        cfg = SearchConfig(space, strategy, dataset, epochs, batch_size, seed, str(device),
                           str(data_dir) if data_dir else None, subset, eval_every, sp, st)
        run_dir = Path(out) if out is not None else None
        if run_dir is not None and (run_dir / "checkpoint.pt").exists():
            raise ArchgradError(f"{run_dir} already holds a search; use --resume {run_dir} to "
                                f"continue it or choose another --out")
    return _run(cfg, run_dir, resume is not None, progress, callbacks)


def _run(cfg: SearchConfig, run_dir: Path | None, resuming: bool, progress: bool,
         callbacks) -> SearchResult:
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    space_cls = SPACES.get(cfg.space)
    strategy: Strategy = make_strategy(cfg.strategy, **cfg.strategy_options)
    strategy._space_cls = space_cls
    stages = strategy.stages_for(cfg.epochs)
    data = None if space_cls.own_data else load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)

    def make_stage(i: int):
        """The space and supernet of stage i (one stage unless the strategy is progressive)."""
        opts = dict(cfg.space_options)
        opts.update(stages[i].space)
        if data is not None:
            for k, v in (("num_classes", data.num_classes), ("in_channels", data.in_channels)):
                if k in space_cls.options:
                    opts.setdefault(k, v)
        sp = get_space(cfg.space, **opts)
        return sp, sp.supernet().to(dev)

    stage_index = strategy.stage_of(0, cfg.epochs)[0]
    if resuming:
        ckpt = load_checkpoint(run_dir / "checkpoint.pt")
        stage_index = ckpt.get("stage", 0)
    space, model = make_stage(stage_index)
    task = space.task(model, cfg.batch_size, cfg.seed, dev) if space_cls.own_data else \
        ImageTask(data, cfg.batch_size, cfg.seed, dev, space.loss, strategy.data_split)
    costs = space.op_costs() if strategy.needs_costs else None
    strategy.setup(space.choices(), model, cfg.seed, dev, costs=costs)
    loss_fn = task.loss_fn
    steps = task.steps_per_epoch
    bench = space.benchmark()

    history: list[dict] = []
    start = 0
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            atomic_write_json(run_dir / "config.json", {
                "search": asdict(cfg), "archgrad": __version__, "torch": torch.__version__,
                "python": platform.python_version(), "device": str(dev),
                "strategy": strategy.describe(), "space": space.config,
                "dataset": task.describe()})
    if resuming:
        model.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
        history = ckpt["history"]
        start = ckpt["epoch"] + 1
        set_rng_state(ckpt["rng"])

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.epochs * steps, initial=start * steps, unit="step", dynamic_ncols=True,
                   desc=f"{cfg.strategy} {cfg.space}/{cfg.dataset}")
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
            for step, (bt, bv) in enumerate(zip(task.weight_batches(epoch),
                                                task.arch_batches(epoch))):
                stats = strategy.step(bt, bv, loss_fn=loss_fn, epoch=epoch, epochs=cfg.epochs,
                                      step=step, steps_per_epoch=steps)
                acc.add(stats)
                if bar is not None:
                    bar.update(1)
                    if step % 5 == 0 or step == steps - 1:
                        m = acc.means()
                        bar.set_postfix({k: f"{m[k]:.3g}" for k in
                                         ("train_loss", "train_acc", "arch_acc") if k in m},
                                        refresh=False)
            record = {"epoch": epoch + 1, "lr": lr, "steps": steps}
            if len(stages) > 1:
                record["stage"] = stage_index + 1
            record.update(stage_info)
            record.update(acc.means())
            if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                ev = task.evaluate(model, strategy.estimator.eval_mix(
                    strategy.arch, eval_generator(cfg.seed, epoch), epoch, cfg.epochs))
                record.update({f"valid_{k}": v for k, v in ev.items()})
            probs = strategy.arch.probs_detached()
            geno = strategy.derive(space)
            record.update(entropy=entropy(probs), genotype=str(geno),
                          probs=_probs_lists(strategy.arch))
            if task.record_derived:
                ev = task.evaluate(model, space.discrete_mix(geno, device=dev))
                record.update({f"derived_{k}": v for k, v in ev.items()})
            if strategy.derive_mode.startswith("process-best"):
                pb = strategy.process_best()
                record["process_best"] = str(space.genotype_from_indices(pb)) if pb else None
            if bench is not None:
                record["benchmark"] = bench.summary(geno)
            record["time_s"] = round(time.perf_counter() - t0, 3)
            history.append(record)
            if run_dir is not None:
                save_checkpoint(run_dir / "checkpoint.pt", {
                    "epoch": epoch, "stage": stage_index, "model": model.state_dict(),
                    "strategy": strategy.state_dict(), "history": history, "rng": rng_state()})
                write_jsonl(run_dir / "metrics.jsonl", history)
            if bar is not None:
                bar.write(_epoch_line(record, cfg.epochs))
            for cb in callbacks:
                cb(record, {"model": model, "strategy": strategy, "space": space,
                            "epoch": epoch, "run_dir": run_dir, "stage": stage_index})
    finally:
        if bar is not None:
            bar.close()

    return _finish(cfg, run_dir, space, model, strategy, task, history, bench)


def _epoch_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}"]
    for k, fmt in (("train_loss", "{:.3f}"), ("train_acc", "{:.1f}%"), ("valid_acc", "{:.1f}%"),
                   ("entropy", "{:.3f}")):
        if r.get(k) is not None:
            parts.append(f"{k} " + fmt.format(r[k]))
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
    if strategy.seen:  # sampling strategies: both forms of "process best", for the record
        for mode in ("process-best", "process-best-mean"):
            final[mode.replace("-", "_") + "_genotype"] = \
                str(space.genotype_from_indices(strategy.process_best(mode)))
    final.update({"genotype": str(geno), "derive": strategy.final_derive,
                  "argmax_genotype": str(argmax_geno), "epochs": cfg.epochs,
                  "entropy": entropy(probs)})
    # discretization gap (SNAS Table 1): the derived architecture evaluated with the supernet's
    # shared weights, without retraining, beside the supernet itself; also with its BN statistics
    # recalibrated for it (no weights change), which separates the statistics' share of the gap
    last = max(cfg.epochs - 1, 0)
    sup = task.evaluate(model, strategy.estimator.eval_mix(
        strategy.arch, eval_generator(cfg.seed, last), last, cfg.epochs))
    final["supernet_eval"] = strategy.estimator.eval_mode
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
    key = "acc" if "acc" in sup else "loss"
    final["discretization_gap"] = sup[key] - disc[key]
    final["discretization_gap_bn"] = sup[key] - disc_bn[key]
    final["gap_metric"] = key
    if bench is not None:
        final["benchmark"] = bench.summary(geno)
    final["search_time_s"] = round(sum(r.get("time_s", 0) for r in history), 2)
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
    return read_json(run_dir / "result.json")
