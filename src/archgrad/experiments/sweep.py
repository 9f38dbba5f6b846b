"""Sweeps: a grid of searches (strategies x seeds x any option with a list of values) run as
one resumable unit.

A sweep directory holds ``sweep.json`` (the grid: every run's name and settings) and ``runs/``
with one search run directory per grid point. Running the same sweep again skips finished runs,
resumes interrupted ones (each from its own checkpoint) and starts the rest; a different grid in
the same directory is refused. ``workers`` searches run at once, each in its own process (on CPU
the cores are split between them; on GPUs they share the devices given, round-robin): one small
supernet leaves most of a large GPU idle. A worker dies with the sweep (``PR_SET_PDEATHSIG`` on
Linux), so a sweep killed with ``kill -9`` leaves no orphans holding run locks; started again it
ends with the same report as an uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArchgradError
from ..runs import schemas
from ..runs.rundir import (
    RunLock,
    atomic_write_json,
    atomic_write_text,
    check_out_dir,
    claim_dir,
    make_dir,
    read_json,
)

FAILED_SUFFIX = ".failed.txt"


@dataclass
class RunSpec:
    """One grid point: a run directory name and the keyword arguments of ``search``."""

    name: str
    strategy: str
    seed: int
    kwargs: dict
    values: dict = field(default_factory=dict)  # the grid's other values for this run


def _slug(v: Any) -> str:
    """A value as part of a directory name: readable, and a long one cut with a digest of the
    whole so that two values that differ past the cut keep their own names."""
    s = json.dumps(v) if not isinstance(v, str) else v
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", s).strip("_") or "x"
    if len(slug) <= 40:
        return slug
    import hashlib
    return f"{slug[:31]}-{hashlib.sha1(s.encode()).hexdigest()[:8]}"


def grid(base: dict, strategies: list[str], seeds: list[int],
         values: dict[str, list] | None = None,
         per_strategy: dict[str, dict] | None = None) -> list[RunSpec]:
    """Every combination of strategy, seed and option values. ``base``: search keyword
    arguments shared by all; ``per_strategy``: keyword arguments of one strategy (a protocol's
    settings); ``values``: option -> the list of values to try."""
    values = values or {}
    keys = sorted(values)
    runs = []
    for strat in strategies:
        for combo in itertools.product(*(values[k] for k in keys)) if keys else [()]:
            for seed in seeds:
                kw = json.loads(json.dumps((per_strategy or {}).get(strat, base)))
                kw["strategy"], kw["seed"] = strat, seed
                vals = dict(zip(keys, combo))
                kw.update(vals)  # options routed to the space or the strategy by search()
                name = "-".join([strat] + [f"{k}={_slug(v)}" for k, v in vals.items()]
                                + [f"seed{seed}"])
                runs.append(RunSpec(name, strat, seed, kw, vals))
    seen: dict[str, RunSpec] = {}
    for r in runs:
        other = seen.setdefault(r.name, r)
        if other is r:
            continue
        if other.values == r.values:
            raise ArchgradError(f"the grid lists run {r.name} twice; list each value once")
        raise ArchgradError(f"the values {other.values} and {r.values} give two runs the same "
                            f"directory name ({r.name}); write the values alike (e.g. both "
                            f"as numbers)")
    return runs


class Sweep:
    """A sweep directory: its grid and its runs' states."""

    def __init__(self, root: Path, runs: list[RunSpec], meta: dict):
        self.root, self.runs, self.meta = Path(root), runs, meta
        self._env: dict[str, str] = {}  # for the workers: $ARCHGRAD_PLUGINS

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.name

    # -- creation --------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, runs: list[RunSpec], meta: dict) -> "Sweep":
        """The sweep in ``root``: created with this grid, or checked to be the same grid."""
        root = Path(root)
        check_out_dir(root)
        if root.is_dir():
            with RunLock(root):   # refused here, before anything is written, while it runs
                pass
        path = root / "sweep.json"
        grid_now = [asdict(r) for r in runs]
        if path.is_file():
            try:
                saved = schemas.read(path)
                same = saved["runs"] == json.loads(json.dumps(grid_now))
            except ArchgradError:
                raise ArchgradError(f"{path} is damaged; remove it or choose another --out") \
                    from None
            if not same:
                raise ArchgradError(f"{root} holds another sweep (its sweep.json lists other "
                                    f"runs or settings); choose another --out")
        else:
            check_runs(runs)  # every run's settings, before anything is written
            root, _ = claim_dir(root)
            path = root / "sweep.json"
            atomic_write_json(path, {"meta": meta, "runs": grid_now})
        return cls(root, runs, meta)

    @classmethod
    def load(cls, root: Path) -> "Sweep":
        root = Path(root)
        path = root / "sweep.json"
        if not path.is_file():
            hint = "; it is a search run (archgrad compare compares runs)" \
                if (root / "config.json").is_file() else ""
            raise ArchgradError(f"{root} is not a sweep directory (no sweep.json){hint}")
        try:
            data = schemas.read(path)
            runs = [RunSpec(**r) for r in data["runs"]]
        except TypeError:
            raise ArchgradError(f"{path} is damaged (a run's settings are not what archgrad "
                                f"writes)") from None
        return cls(root, runs, data.get("meta", {}))

    # -- states ----------------------------------------------------------------------------
    def state(self, spec: RunSpec) -> str:
        d = self.run_dir(spec)
        if (self.runs_dir / (spec.name + FAILED_SUFFIX)).is_file():
            return "failed"
        if (d / "result.json").is_file():
            if self.meta.get("retrain") and not (d / "retrain" / "train_result.json").is_file():
                return "partial"  # searched; the found architecture's training is not done
            return "done"
        if (d / "config.json").is_file():
            return "partial"
        return "new"

    def epochs_done(self, spec: RunSpec) -> int:
        m = self.run_dir(spec) / "metrics.jsonl"
        try:
            return sum(1 for line in m.read_text().splitlines() if line.strip())
        except OSError:
            return 0

    def total_epochs(self, spec: RunSpec) -> int:
        cfg = self.run_dir(spec) / "config.json"
        if cfg.is_file():
            try:
                return int(read_json(cfg)["search"]["epochs"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return int(spec.kwargs.get("epochs") or 0) or 1

    # -- running ---------------------------------------------------------------------------
    def run(self, workers: int = 1, devices: list[str] | None = None, progress: bool = True,
            retry_failed: bool = False) -> dict:
        """Run every run not finished yet, ``workers`` at once; returns a summary. One process
        at a time runs a sweep: a second one on the same directory is refused in one line."""
        with RunLock(self.root):
            return self._run(workers, devices, progress, retry_failed)

    def _run(self, workers, devices, progress, retry_failed) -> dict:
        from ..plugins import ENV, env_for
        plugins = env_for(sorted({r.strategy for r in self.runs}),
                          sorted({str(r.kwargs.get("space", "nb201")) for r in self.runs}))
        self._env = {ENV: plugins} if plugins else {}
        if retry_failed:
            for f in self.runs_dir.glob("*" + FAILED_SUFFIX):
                f.unlink()
        pending = [r for r in self.runs if self.state(r) in ("new", "partial")]
        make_dir(self.runs_dir)
        devices = devices or ["cpu"]
        cores = _cores()
        threads = max(1, cores // max(workers, 1))
        active: dict[str, tuple[subprocess.Popen, RunSpec]] = {}
        bar = None
        total = sum(self.total_epochs(r) for r in self.runs)
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, unit="epoch", dynamic_ncols=True,
                       desc=f"sweep {self.root.name}")
        queue = list(pending)
        slot = itertools.count()
        try:
            while queue or active:
                while queue and len(active) < workers:
                    spec = queue.pop(0)
                    dev = devices[next(slot) % len(devices)]
                    active[spec.name] = (self._start(spec, dev, threads), spec)
                time.sleep(0.2)
                for name, (p, spec) in list(active.items()):
                    if p.poll() is not None:
                        del active[name]
                        self._finished(spec, p)
                if bar is not None:
                    done = sum(min(self.epochs_done(r), self.total_epochs(r)) for r in self.runs)
                    bar.n = done
                    states = [self.state(r) for r in self.runs]
                    bar.set_postfix_str(f"{states.count('done')}/{len(self.runs)} runs done, "
                                        f"{len(active)} running"
                                        + (f", {states.count('failed')} failed"
                                           if "failed" in states else ""), refresh=False)
                    bar.refresh()
        except BaseException:
            for p, _ in active.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p, _ in active.values():
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            raise
        finally:
            if bar is not None:
                bar.close()
        states = {r.name: self.state(r) for r in self.runs}
        return {"runs": len(self.runs), "done": sum(s == "done" for s in states.values()),
                "failed": [n for n, s in states.items() if s == "failed"],
                "ran": [r.name for r in pending]}

    def _start(self, spec: RunSpec, device: str, threads: int) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(self._env)
        env["ARCHGRAD_THREADS"] = str(threads)
        env.setdefault("OMP_NUM_THREADS", str(threads))
        cmd = [sys.executable, "-m", "archgrad.experiments.sweep", "worker", str(self.root),
               spec.name, device]
        log = open(self.runs_dir / f".{spec.name}.log", "wb")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def _finished(self, spec: RunSpec, p: subprocess.Popen) -> None:
        log = self.runs_dir / f".{spec.name}.log"
        if p.returncode in (130, 143, -signal.SIGTERM, -signal.SIGINT):
            raise KeyboardInterrupt
        if p.returncode != 0:
            try:
                text = log.read_text(errors="replace").strip().splitlines()
            except OSError:
                text = []
            msg = next((line for line in reversed(text) if line.startswith("archgrad")),
                       text[-1] if text else f"exit status {p.returncode}")
            if p.returncode == -signal.SIGKILL:  # the kernel's out-of-memory killer, mostly
                msg = ("archgrad: the search process was killed (SIGKILL), most likely out of "
                       "memory; run fewer at once (--workers) or a smaller configuration, "
                       "then --retry-failed (it resumes from its last checkpoint)")
            atomic_write_text(self.runs_dir / (spec.name + FAILED_SUFFIX), msg + "\n")
        try:
            log.unlink()
        except OSError:
            pass


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def worker(root: str, name: str, device: str) -> int:
    """One run of a sweep, in its own process (``python -m archgrad.experiments.sweep worker
    ...``)."""
    from ..plugins import load
    from ..search import search
    try:
        load()  # the modules of user strategies and spaces, as the parent passed them on
    except ArchgradError as e:
        print(f"archgrad: error: {e}", file=sys.stderr)
        return e.exit_code
    sweep = Sweep.load(Path(root))
    spec = next((r for r in sweep.runs if r.name == name), None)
    if spec is None:
        print(f"archgrad: error: {root} has no run {name}", file=sys.stderr)
        return 2
    d = sweep.run_dir(spec)
    try:
        if (d / "config.json").is_file():
            search(resume=d, device=device)
        else:
            kw = dict(spec.kwargs)
            kw["device"] = device if device != "cpu" or "device" not in kw else kw["device"]
            if device != "cpu":
                kw["device"] = device
            search(out=d, **kw)
        if sweep.meta.get("retrain"):
            retrain(d, spec, dict(sweep.meta["retrain"]), device)
    except ArchgradError as e:
        print(f"archgrad: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def retrain(run_dir: Path, spec: RunSpec, options: dict, device: str) -> dict:
    """Train the architecture a search run found from scratch, in ``run_dir/retrain``
    (resumed where it stopped; a finished one is left as it is)."""
    from ..engine.train import train
    out = run_dir / "retrain"
    if (out / "train_config.json").is_file():
        return train(None, None, resume=out, device=device)
    cfg = schemas.read(run_dir / "config.json")["search"]
    return train(cfg["space"], str(run_dir), cfg["dataset"], seed=spec.seed, device=device,
                 data_dir=cfg.get("data_dir"), subset=cfg.get("subset"), out=out, **options)


# ---- the Python API ---------------------------------------------------------------------------
def check_runs(runs: list[RunSpec]) -> list[tuple[RunSpec, Any, Any]]:
    """Every run's settings checked as its search will check them, and its data found (read
    once per dataset); a bad one is named in one line. Returns (run, configuration, data)
    triples (data None for a space that makes its own)."""
    from ..data import load_dataset
    from ..search import check_search_kwargs
    from ..spaces import SPACES
    datas: dict[tuple, Any] = {}
    out = []
    for r in runs:
        try:
            cfg = check_search_kwargs(**r.kwargs)
            data = None
            if not SPACES.get(cfg.space).own_data:
                key = (cfg.dataset, cfg.data_dir, cfg.subset)
                if key not in datas:
                    datas[key] = load_dataset(*key)  # it is there
                data = datas[key]
        except ArchgradError as e:
            raise ArchgradError(f"run {r.name}: {e}") from None
        out.append((r, cfg, data))
    return out


def check_workers_fit(runs: list[RunSpec], workers: int, devices: list[str]) -> None:
    """Every search must fit on the devices it may run on (the estimate each search makes of
    itself), and with several workers on a device the searches that may run there at once must
    fit together: the largest ones are summed against the memory available. Either is refused
    in one line before anything starts."""
    from collections import Counter

    from ..engine.memory import GB, available_bytes
    from ..search import memory_need
    per_device = Counter(devices[i % len(devices)] for i in range(workers))
    shared = {dev: k for dev, k in per_device.items() if k > 1}
    needs: dict[str, list[tuple[int, str]]] = {dev: [] for dev in per_device}
    known: dict[tuple[str, str], int] = {}
    for r, cfg, data in check_runs(runs):
        settings = json.dumps([cfg.space, cfg.space_options, cfg.strategy,
                               cfg.strategy_options, cfg.batch_size, cfg.epochs, cfg.dataset,
                               cfg.data_dir, cfg.subset], sort_keys=True,
                              default=str)   # the seed does not change the network
        for dev in per_device:
            try:
                if (settings, dev) not in known:
                    known[settings, dev] = memory_need(cfg, data, dev)
            except ArchgradError as e:
                raise ArchgradError(f"run {r.name}: {e}") from None
            needs[dev].append((known[settings, dev], r.name))
    for dev, k in shared.items():
        have = available_bytes(dev)
        largest = sorted(needs[dev], reverse=True)[:k]
        total = sum(n for n, _ in largest)
        if have is None or total <= have:
            continue
        fit, used = 0, 0
        for n, _ in largest:
            if used + n > have:
                break
            fit, used = fit + 1, used + n
        raise ArchgradError(
            f"{k} workers on {dev} may run searches needing about {total / GB:.1f} GB at once "
            f"(the largest, {largest[0][1]}: {largest[0][0] / GB:.1f} GB), more than the "
            f"{have / GB:.1f} GB available; at most {max(fit, 1)} at once fit there: use "
            f"--workers {max(fit, 1) * len(per_device)}")


def run_grid(runs: list[RunSpec], out: str | Path | None, meta: dict, *, workers: int = 1,
             devices: list[str] | None = None, progress: bool = False,
             retry_failed: bool = False, dry_run: bool = False) -> dict:
    """Open (or continue) the sweep of ``runs`` in ``out``, run what is not finished and write
    its report; returns the sweep directory, the summary and the report's paths. ``dry_run``:
    check everything, run and write nothing, and return the runs with their states."""
    from ..runs.rundir import as_path, new_run_dir
    from ..search import resolve_device
    from .report import sweep_report
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ArchgradError(f"workers must be a positive integer, got {workers!r}")
    devs = [str(resolve_device(d)) for d in (devices or ["auto"])]  # before anything is made
    root = as_path(out, "out") if out is not None else new_run_dir("runs", "sweep")
    if dry_run:
        return _plan(runs, root, workers, devs)
    check_workers_fit(runs, workers, devs)
    sweep = Sweep.open(root, runs, meta)
    summary = sweep.run(workers, devs, progress=progress, retry_failed=retry_failed)
    return {"sweep": str(sweep.root), **summary, **sweep_report(sweep.root)}


def _plan(runs: list[RunSpec], root: Path, workers: int, devices: list[str]) -> dict:
    """A sweep's dry run: its runs checked (settings, data, memory for the workers) and their
    states in ``root`` if it holds this sweep already; nothing written."""
    check_runs(runs)
    check_workers_fit(runs, workers, devices)
    states = {r.name: "new" for r in runs}
    if (root / "sweep.json").is_file():
        existing = Sweep.load(root)
        if [asdict(r) for r in existing.runs] != json.loads(json.dumps([asdict(r)
                                                                         for r in runs])):
            raise ArchgradError(f"{root} holds another sweep (its sweep.json lists other runs "
                                f"or settings); choose another --out")
        states = {r.name: existing.state(r) for r in existing.runs}
    return {"sweep": str(root), "dry_run": True, "runs": len(runs),
            "to_run": sum(st in ("new", "partial") for st in states.values()),
            "states": states, "workers": workers, "devices": devices}


def run_sweep(strategies=("darts",), seeds=(0,), values: dict[str, list] | None = None, *,
              out: str | Path | None = None, workers: int = 1,
              devices: list[str] | None = None, progress: bool = False,
              retry_failed: bool = False, dry_run: bool = False, **search_kwargs) -> dict:
    """Every combination of ``strategies``, ``seeds`` and ``values`` (option -> values to try)
    searched with ``search_kwargs`` as one resumable unit in ``out`` (``archgrad sweep``);
    calling it again skips finished runs and resumes interrupted ones. ``dry_run``: check and
    list the runs, run and write nothing."""
    runs = grid(dict(search_kwargs), list(strategies), list(seeds), values)
    return run_grid(runs, out, {"space": search_kwargs.get("space", "nb201"), "config": None},
                    workers=workers, devices=devices, progress=progress,
                    retry_failed=retry_failed, dry_run=dry_run)


def reproduce(protocol: str | Path, scale: str = "full", *, seeds=None, strategies=None,
              out: str | Path | None = None, data_dir: str | Path | None = None,
              workers: int = 1, devices: list[str] | None = None, progress: bool = False,
              retry_failed: bool = False, dry_run: bool = False) -> dict:
    """A paper's comparison (``archgrad reproduce``): the protocol's grid at ``scale`` (full,
    proxy, tiny), optionally fewer ``seeds`` or ``strategies``, run as a sweep in ``out``; the
    report beside the published figures. ``dry_run``: check and list the runs only."""
    from ..protocols import load
    from ..runs.rundir import new_run_dir
    proto = load(protocol).at_scale(scale)
    # a configuration file of one search (no strategies or seeds lists) is a grid of one
    own = proto.strategies or [proto.search.get("strategy", "darts")]
    strategies = list(strategies) if strategies else own
    bad = [s for s in strategies if s not in own]
    if bad and proto.strategies:
        raise ArchgradError(f"protocol '{proto.name}' compares {', '.join(proto.strategies)}; "
                            f"not {', '.join(bad)}")
    per = {}
    for s in strategies:
        kw = proto.search_kwargs(s)
        if data_dir:
            kw["data_dir"] = str(data_dir)
        per[s] = kw
    runs = grid({}, strategies, list(seeds) if seeds else list(proto.seeds), None, per)
    meta = {"protocol": str(protocol), "scale": scale,
            "space": proto.search.get("space", "nb201")}
    if proto.retrain:  # every found architecture is trained from scratch after its search
        meta["retrain"] = proto.retrain_kwargs()
    return run_grid(runs, out if out is not None else new_run_dir(
        "runs", "reproduce", proto.name, scale), meta, workers=workers, devices=devices,
        progress=progress, retry_failed=retry_failed, dry_run=dry_run)


def main(argv: list[str]) -> int:  # pragma: no cover - a subprocess entry point
    if len(argv) == 4 and argv[0] == "worker":
        threads = os.environ.get("ARCHGRAD_THREADS")
        if threads:
            import torch
            torch.set_num_threads(int(threads))

        def terminate(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, terminate)
        try:
            return worker(argv[1], argv[2], argv[3])
        except KeyboardInterrupt:
            return 130
    print("usage: python -m archgrad.experiments.sweep worker SWEEP_DIR RUN_NAME DEVICE",
          file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
