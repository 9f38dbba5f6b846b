"""The search loop: ``search(...)`` sets a run up (or resumes it), then runs the strategy's steps
epoch by epoch, records each epoch and checkpoints it."""
from __future__ import annotations

import math
import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from .. import __version__
from ..core.arch import entropy, max_prob
from ..core.strategy import Strategy
from ..data import load_dataset
from ..errors import ArchgradError, DivergenceError
from ..runs.rundir import (
    RunLock,
    as_path,
    atomic_write_json,
    check_out_dir,
    claim_dir,
    clean_temporaries,
    load_checkpoint,
    make_dir,
    resumed_config,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    undo_set_up,
)
from ..spaces import SPACES
from .config import (
    AMP_DTYPES,
    SearchConfig,
    SearchResult,
    _check_config,
    _digest,
    _new_config,
    eval_generator,
    read_run_config,
    resolve_device,
)
from .files import (
    _check_checkpoint,
    _epoch_line,
    _finished,
    _probs_lists,
    _tensorboard,
    _write_logs,
)
from .finish import _finish
from .plan import _check_memory, _planned_stages, _stage_space, build_task


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
    from ..engine import dist
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
    return _Search(cfg, run_dir, resuming, progress, callbacks, meta, saved_digest,
                   log_csv=log_csv, tensorboard=tensorboard).run()


class _Search:
    """One search, from its checks to its result: check what must hold before anything is
    written, claim (or reopen) the run directory, build the supernet and the strategy, restore
    a checkpoint, then train, record and checkpoint epoch by epoch."""

    def __init__(self, cfg: SearchConfig, run_dir: Path | None, resuming: bool, progress: bool,
                 callbacks, meta: dict | None, saved_digest: str | None, *, log_csv: bool,
                 tensorboard: bool):
        from ..engine import dist
        self.ctx = dist.context()
        dist.check_batch(cfg.batch_size)
        self.main = self.ctx.main  # rank 0 alone writes the run directory and the progress
        self.cfg, self.run_dir, self.resuming = cfg, run_dir, resuming
        self.progress = progress and self.main
        self.callbacks, self.meta, self.saved_digest = callbacks, meta, saved_digest
        self.log_csv, self.tensorboard = log_csv, tensorboard
        self.dev = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.space_cls = SPACES.get(cfg.space)
        self.strategy, self.stages = _planned_stages(cfg)
        self.data = None if self.space_cls.own_data else load_dataset(cfg.dataset, cfg.data_dir,
                                                                      cfg.subset)
        self.lock = None
        self.made = None  # a new run's directories: removed if its set-up fails before config
        self.ckpt = None
        self.history: list[dict] = []
        self.start = 0
        self.stage_index = self.strategy.stage_of(0, cfg.epochs)[0]

    def stage_space(self, i: int):
        return _stage_space(self.cfg, self.stages[i], self.data)

    def make_stage(self, i: int):
        """The space and supernet of stage i (one stage unless the strategy is progressive)."""
        sp = self.stage_space(i)
        return sp, sp.supernet().to(self.dev)

    def check(self) -> None:
        """What cannot fit in memory is refused before anything is built or written."""
        cfg = self.cfg
        for i in range(len(self.stages)):
            _check_memory(self.stage_space(i), self.data, cfg, self.dev)
        if self.space_cls.modality == "sequence":  # so is a corpus too short for one step
            build_task(self.stage_space(0), None, self.data, cfg, torch.device("cpu"),
                       self.strategy)
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError:
                raise ArchgradError("--tensorboard needs the tensorboard package: pip install "
                                    "tensorboard") from None

    def run(self) -> SearchResult:
        self.check()
        try:
            self.ctx.barrier()  # every rank has checked the set-up before rank 0 writes
            if self.run_dir is not None:
                finished = self.open_run_dir()
                if finished is not None:
                    return finished
            self.build()
            self.write_config()
            self.restore()
            return self.epochs()
        finally:
            if self.lock is not None:
                if self.made is not None and not (self.run_dir / "config.json").exists():
                    undo_set_up(self.run_dir, self.made, self.lock)  # set-up failed: no trace
                self.lock.release()

    def open_run_dir(self) -> SearchResult | None:
        """Claim a new run directory or reopen one to resume, with its lock; read and check its
        checkpoint. A resumed run already finished is returned as it is."""
        cfg, ctx, run_dir = self.cfg, self.ctx, self.run_dir
        if self.main:
            if self.resuming:
                make_dir(run_dir)
            else:
                run_dir, self.made = claim_dir(run_dir)
                self.run_dir = run_dir
            self.lock = RunLock(run_dir).acquire()
            clean_temporaries(run_dir)
        ctx.barrier()
        if self.resuming:
            ckpt_path = run_dir / "checkpoint.pt"
            if ckpt_path.exists():  # else: stopped before its first checkpoint, start over
                ckpt = load_checkpoint(ckpt_path, required=(
                    "epoch", "stage", "model", "strategy", "history", "rng"))
                _check_checkpoint(ckpt, ckpt_path, cfg, self.meta or {}, self.saved_digest)
                saved_world = int(ckpt.get("world_size", 1))
                if saved_world != ctx.world:
                    raise ArchgradError(
                        f"{run_dir} was searched by {saved_world} process"
                        f"{'es' if saved_world != 1 else ''}; resume it with "
                        f"{saved_world} (a different number would shard the data "
                        f"differently and the run would not be the same)")
                if ckpt["epoch"] + 1 >= cfg.epochs and (run_dir / "result.json").is_file() \
                        and (run_dir / "genotype.txt").is_file():
                    return _finished(cfg, run_dir, ckpt, self.stage_space(ckpt["stage"]))
                self.stage_index = ckpt["stage"]
                self.ckpt = ckpt
        else:
            if self.main and (run_dir / "config.json").exists():
                raise ArchgradError(f"{run_dir} already holds a search; use --resume "
                                    f"{run_dir} to continue it or choose another --out")
            run_id = ctx.gather_objects(uuid.uuid4().hex)[0]  # rank 0's, on every rank
            self.meta = {"search": asdict(cfg), "run_id": run_id, "config_digest": _digest(cfg)}
        return None

    def build(self) -> None:
        """The stage's space and supernet, the task (data and loss), the strategy set up on
        them (mixed precision, the process group)."""
        cfg, ctx, dev, strategy = self.cfg, self.ctx, self.dev, self.strategy
        self.space, self.model = self.make_stage(self.stage_index)
        self.task = build_task(self.space, self.model, self.data, cfg, dev, strategy)
        costs = self.space.op_costs() if strategy.needs_costs else None
        strategy.setup(self.space.choices(), self.model, cfg.seed, dev, costs=costs)
        if cfg.amp is not None:
            strategy.amp = AMP_DTYPES[cfg.amp]
            if cfg.amp == "fp16":
                strategy.scaler = torch.amp.GradScaler(dev.type)
        if dev.type == "cuda":  # fixed shapes within a step: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        if ctx.active:
            strategy.dist = ctx
            ctx.broadcast_buffers(self.model)
            with torch.no_grad():  # the same initial weights everywhere (they are, by the seed)
                for p in list(self.model.parameters()) + list(strategy.arch.parameters()):
                    torch.distributed.broadcast(p.data, 0)
        self.bench = self.space.benchmark()

    def write_config(self) -> None:
        """config.json of a new run: everything needed to rebuild it."""
        if self.run_dir is None or self.resuming or not self.main:
            return
        ctx = self.ctx
        atomic_write_json(self.run_dir / "config.json", {
            **self.meta, "archgrad": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device": str(self.dev),
            "world_size": ctx.world,
            "batch_size_means": "the batch of all processes together" if ctx.active else
            "the batch of the one process",
            **({"backend": ctx.backend} if ctx.active else {}),
            "strategy": self.strategy.describe(), "space": self.space.config,
            "dataset": self.task.describe()})

    def restore(self) -> None:
        """The checkpoint's weights, strategy, random states and history."""
        ckpt = self.ckpt
        if ckpt is not None:
            where = self.run_dir / "checkpoint.pt"
            try:
                self.model.load_state_dict(ckpt["model"])
                self.strategy.load_state_dict(ckpt["strategy"])
                ranks = ckpt.get("rng_ranks")
                set_rng_state(ranks[self.ctx.rank] if ranks else ckpt["rng"])
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as e:
                msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else \
                    type(e).__name__
                raise ArchgradError(f"{where} does not fit this run's network and strategy "
                                    f"({msg})") from None
            self.history = list(ckpt["history"])
            self.start = ckpt["epoch"] + 1
            if self.history and self.history[-1].get("stopped"):  # stopped early: all done
                self.start = self.cfg.epochs
        if self.run_dir is not None and self.resuming and self.main:  # the epochs it holds
            _write_logs(self.run_dir, self.history, self.log_csv)

    def epochs(self) -> SearchResult:
        """The epochs left, with the progress bar and TensorBoard; then the result."""
        cfg, steps = self.cfg, self.task.steps_per_epoch
        writer = bar = None
        if self.tensorboard and self.run_dir is not None and self.main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.start + 1)
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=cfg.epochs * steps, initial=self.start * steps, unit="step",
                       dynamic_ncols=True, desc=f"{cfg.strategy} {cfg.space}/{cfg.dataset}")
        try:
            epoch = self.start
            while epoch < cfg.epochs:
                record = self.epoch(epoch, bar)
                # DARTS-ADA went back: the epochs after the one it went back to run again
                epoch = record["rollback_to"] if "rollback_to" in record else epoch + 1
                if writer is not None:
                    _tensorboard(writer, record)
                if bar is not None:
                    bar.write(_epoch_line(record, cfg.epochs))
                for cb in self.callbacks:
                    cb(record, {"model": self.model, "strategy": self.strategy,
                                "space": self.space, "epoch": epoch, "run_dir": self.run_dir,
                                "stage": self.stage_index})
                if record.get("stopped"):  # early stopping fired (the checkpoint says so)
                    if bar is not None:
                        bar.write(f"stopped after epoch {record['epoch']}: {record['stopped']}")
                    break
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return _finish(cfg, self.run_dir if self.main else None, self.space, self.model,
                       self.strategy, self.task, self.history, self.bench)

    def epoch(self, epoch: int, bar) -> dict:
        """One epoch: its steps, the divergence check, its record, its checkpoint."""
        t0 = time.perf_counter()
        new_stage = self.strategy.stage_of(epoch, self.cfg.epochs)[0]
        stage_info = {}
        if new_stage != self.stage_index:  # a progressive strategy's next, deeper supernet
            self.stage_index = new_stage
            self.space, self.model = self.make_stage(new_stage)
            stage_info = self.strategy.begin_stage(new_stage, self.stages[new_stage], self.model)
            for part in self.strategy.addons:
                part.begin_stage(self.strategy, new_stage)
            if self.space_cls.own_data:
                self.task.model = self.model
        lr = self.strategy.set_lr(epoch, self.cfg.epochs)
        self.model.train()
        acc, done_steps = self.steps(epoch, bar)
        record = {"epoch": epoch + 1, "lr": lr, "steps": done_steps}
        if len(self.stages) > 1:
            record["stage"] = self.stage_index + 1
        record.update(stage_info)
        record.update(self.ctx.average_floats(acc.means()))
        self.ctx.broadcast_buffers(self.model)  # rank 0's running statistics everywhere
        self.evaluate(epoch, record)
        record["time_s"] = round(time.perf_counter() - t0, 3)
        if "rollback_to" in record:
            self.go_back(record, bar)
            return record
        self.history.append(record)
        self.save(epoch)
        return record

    def go_back(self, record: dict, bar) -> None:
        """DARTS-ADA: the states at the end of the epoch it goes back to, the raised weight
        decay, the history cut there (its last record says why), that epoch's checkpoint."""
        back = record["rollback_to"]
        part = next(a for a in self.strategy.addons if hasattr(a, "rewind"))
        part.rewind(self.strategy, back, record["ada"])
        self.history = [r for r in self.history if r["epoch"] <= back]
        self.history[-1] = {**self.history[-1], "ada": list(part.events)}
        if bar is not None:
            bar.total += (record["epoch"] - back) * self.task.steps_per_epoch
            bar.write(f"epoch {record['epoch']}: {record['ada']['why']}; back to epoch {back} "
                      f"with weight decay {record['ada']['weight_decay']:g}")
        self.save(back - 1)

    def steps(self, epoch: int, bar) -> tuple[_EpochStats, int]:
        """The epoch's steps; a loss or state that stops being finite ends the search."""
        cfg, ctx, strategy, task = self.cfg, self.ctx, self.strategy, self.task
        steps = task.steps_per_epoch
        acc = _EpochStats()
        monitor = DivergenceMonitor()
        arch_loss_fn = getattr(task, "arch_loss_fn", None)
        done_steps = 0
        shown = -math.inf
        for step, (bt, bv) in enumerate(task.batches(epoch)):
            with ctx.synchronised_batch_norm(cfg.sync_bn):
                stats = strategy.step(bt, bv, loss_fn=task.loss_fn, epoch=epoch,
                                      epochs=cfg.epochs, step=step, steps_per_epoch=steps,
                                      arch_loss_fn=arch_loss_fn)
            done_steps += 1
            monitor.add(stats, step)
            acc.add(stats)
            if bar is not None:
                bar.update(1)
                # the running figures read tensors back (a host synchronisation on a GPU): at
                # most every 2 seconds, and at the epoch's end
                now = time.monotonic()
                if now - shown >= 2.0 or step == steps - 1:
                    shown = now
                    m = acc.means()
                    post = {k: f"{m[k]:.3g}" for k in ("train_loss", "train_acc", "arch_acc")
                            if k in m}
                    if "train_nll" in m:
                        post["train_ppl"] = f"{math.exp(min(m['train_nll'], 700)):.1f}"
                    bar.set_postfix(post, refresh=False)
        bad = monitor.problem()
        if bad is None:
            broken = _check_finite_state(self.model, strategy)
            if broken:
                bad = (broken, steps - 1, float("nan"))
        if ctx.any_true(bad is not None) and bad is None:
            bad = ("the loss of another process", steps - 1, float("nan"))
        if bad is not None:
            what, at, val = bad
            kept = (f"the checkpoint of epoch {epoch} is kept" if epoch > 0 and
                    self.run_dir is not None else "no checkpoint was written")
            raise DivergenceError(
                f"the search diverged in epoch {epoch + 1}, step {at + 1}: {what} is "
                f"{val:g}; {kept}, no result is written; {_divergence_hint(cfg, strategy)}")
        return acc, done_steps

    def evaluate(self, epoch: int, record: dict) -> None:
        """The epoch's figures beyond the steps': the supernet and the derived cell on the
        validation data, the distribution, the benchmark, the strategy's own (eigenvalue,
        early stopping)."""
        cfg, dev, strategy, task = self.cfg, self.dev, self.strategy, self.task
        model, space = self.model, self.space
        if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            ev = task.evaluate(model, strategy.estimator.eval_mix(
                strategy.arch, eval_generator(cfg.seed, epoch), epoch, cfg.epochs),
                bn=strategy.estimator.eval_bn)
            record.update({f"valid_{k}": v for k, v in ev.items()})
        task.summarize(record)
        probs = strategy.arch.probs_detached()
        geno = strategy.derive(space)
        record.update(entropy=entropy(probs), max_prob=max_prob(probs), genotype=str(geno),
                      probs=_probs_lists(strategy.arch))
        if task.record_derived:
            ev = task.evaluate(model, space.discrete_mix(geno, device=dev))
            record.update({f"derived_{k}": v for k, v in ev.items()})
        record.update(space.report(model, geno))
        if strategy.derive_mode.startswith("process-best"):
            pb = strategy.process_best()
            record["process_best"] = str(space.genotype_from_indices(pb)) if pb else None
        if self.bench is not None:
            record["benchmark"] = self.bench.summary(geno)
        record.update(strategy.end_epoch(task, self.history, record))  # eigenvalue, stop

    def save(self, epoch: int) -> None:
        """The epoch's checkpoint (the one it replaces kept) and logs."""
        rngs = self.ctx.gather_objects(rng_state()) if self.run_dir is not None else None
        if self.run_dir is None or not self.main:
            return
        ctx, meta = self.ctx, self.meta
        save_checkpoint(self.run_dir / "checkpoint.pt", {
            "epoch": epoch, "stage": self.stage_index, "model": self.model.state_dict(),
            "strategy": self.strategy.state_dict(), "history": self.history,
            "rng": rngs[0], "run_id": meta["run_id"],
            "config_digest": meta["config_digest"], "world_size": ctx.world,
            **({"rng_ranks": rngs} if ctx.active else {})}, keep_previous=True)
        _write_logs(self.run_dir, self.history, self.log_csv)
