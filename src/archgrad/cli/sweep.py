"""``archgrad sweep``: a grid of searches as one resumable unit."""
from __future__ import annotations

from ..errors import ArchgradError
from .common import (
    EPILOG_OPTIONS,
    _common,
    _path,
    _positive,
    _print_json,
    _seed,
    _sets,
    _space_flags,
    _value,
)
from .search import _search_kwargs


def add(sub) -> None:
    """The ``sweep`` command's arguments."""
    sw = sub.add_parser("sweep", help="run a grid of searches (strategies x seeds x values)",
                        epilog=EPILOG_OPTIONS,
                        description="Run every combination of --strategies, --seeds and "
                        "--grid values as one resumable unit, each run in its own directory "
                        "under OUT/runs; running the command again skips finished runs and "
                        "resumes interrupted ones. Writes OUT/report.md at the end.")
    sw.add_argument("--strategies", nargs="+", default=None, metavar="NAME",
                    help="strategies (default: the config's, else darts)")
    sw.add_argument("--seeds", nargs="+", type=_seed, default=None, metavar="SEED",
                    help="seeds (default: the config's, else 0)")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="an option and the values to try (repeatable); the values of a list "
                    "option are separated by semicolons: --grid 'arch_betas=0.5,0.999;0.9,0.999'")
    sw.add_argument("--space", default=None, help="search space (default: nb201)")
    _common(sw, epochs_help="search epochs")
    sw.add_argument("--config", type=_path, default=None, metavar="FILE|PROTOCOL",
                    help="settings from a TOML file or protocol")
    _sweep_flags(sw, quiet=False)
    sw.set_defaults(func=cmd_sweep)


def _sweep_flags(p, quiet: bool = True) -> None:
    p.add_argument("--out", type=_path, default=None, metavar="DIR",
                   help="sweep directory (default: a new directory under runs/)")
    p.add_argument("--workers", type=_positive, default=1,
                   help="searches at once, each in its own process (the CPU cores are split "
                        "between them; GPUs are shared)")
    p.add_argument("--devices", default=None, help="comma-separated devices the workers share "
                   "round-robin, e.g. cuda:0,cuda:1 (default: --device)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--dry-run", action="store_true", help="check every run (settings, data, "
                   "memory for the workers) and list the runs with their states; run and write "
                   "nothing")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def _devices(args) -> list[str]:
    from ..search import resolve_device
    if args.devices is not None and not args.devices.strip(", "):
        raise ArchgradError("--devices needs at least one device, e.g. cuda:0,cuda:1 or cpu")
    devs = [d.strip() for d in (args.devices or "").split(",") if d.strip()] or \
        [getattr(args, "device", "auto") or "auto"]
    return [str(resolve_device(d)) for d in devs]


def _print_sweep(args, res: dict) -> int:
    if res.get("dry_run"):
        if getattr(args, "json", False):
            _print_json(res)
            return 0
        counts = {}
        for st in res["states"].values():
            counts[st] = counts.get(st, 0) + 1
        print(f"sweep {res['sweep']}: {res['runs']} runs, {res['to_run']} to run ("
              + ", ".join(f"{n} {st}" for st, n in counts.items()) + f"), {res['workers']} "
              f"at once on {', '.join(res['devices'])}")
        width = max(len(n) for n in res["states"])
        for name, st in res["states"].items():
            print(f"  {name:<{width}}  {st}")
        print("nothing was run or written (--dry-run)")
        return 0
    if getattr(args, "json", False):
        _print_json(res)
        return 0 if not res["failed"] else 1
    ran = len(res["ran"])
    print(f"sweep {args.out}: {res['done']}/{res['runs']} runs done"
          + (f" ({ran} run{'s' if ran != 1 else ''} now)" if ran else
             " (nothing left to run)")
          + (f"; failed: {', '.join(res['failed'])}" if res["failed"] else ""))
    print(f"report: {res['report']}")
    return 0 if not res["failed"] else 1


def cmd_sweep(args) -> int:
    from ..experiments.sweep import grid, run_grid
    from ..runs.rundir import new_run_dir
    if args.seed is not None:
        raise ArchgradError("a sweep takes --seeds (a list); drop --seed")
    proto = None
    if getattr(args, "config", None):
        from ..protocols import load
        proto = load(args.config)
    if args.strategies:
        strategies = list(args.strategies)
    elif proto is not None and proto.strategies:
        strategies = list(proto.strategies)   # a protocol's grid, with each one's settings
    else:
        strategies = None
    per = {}
    for s in strategies or [None]:
        args.strategy = s
        kw = _search_kwargs(args)
        per[kw.pop("strategy")] = kw
    strategies = strategies or list(per)
    values = {}
    base_space = per[strategies[0]].get("space", "nb201")
    # what the command line fixes, as (owner, name): a swept key must not be among them
    given = {(k.rpartition(".")[0], k.rpartition(".")[2]): f"--set {k}" for k in _sets(args.set)}
    given.update({("space", k): args._flag_names.get(k, k)
                  for k in _space_flags(args, base_space)})
    given.update({("", k): f"--{k.replace('_', '-')}" for k in
                  ("epochs", "batch_size", "subset", "data_dir", "eval_every")
                  if getattr(args, k, None) is not None})
    for item in args.grid or []:
        if "=" not in item:
            raise ArchgradError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise ArchgradError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        if k in ("seed", "seeds", "strategy", "strategies"):
            flag = "--seeds" if k.startswith("seed") else "--strategies"
            raise ArchgradError(f"--grid {k}: give the {flag[2:]} to sweep with {flag}")
        if k in values:
            raise ArchgradError(f"--grid {k} is given twice; list its values once "
                                f"({k}=V1,V2,...)")
        owner, _, name = k.rpartition(".")
        fixed = next((flag for (o, n), flag in given.items()
                      if n == name and (not o or not owner or o == owner)), None)
        if fixed:  # the grid would silently override a value the command line fixes
            raise ArchgradError(f"{k} is both swept (--grid {k}=...) and fixed ({fixed}); "
                                f"give it once")
        # values are separated by commas; those of a list option (ops, arch_betas, ...) by
        # semicolons, each a comma-separated list
        sep = ";" if ";" in v or _list_option(k, strategies, base_space) else ","
        vals = [_value(x.strip()) for x in v.split(sep) if x.strip()]
        if not vals:
            raise ArchgradError(f"--grid {k} has no values")
        values[k] = vals
    seeds = list(args.seeds) if args.seeds else list(proto.seeds) if proto else [0]
    base = per[strategies[0]]
    runs = grid(base, strategies, seeds, values, per)
    if "space" in values:  # the size flags and the default dataset mean something per space
        _per_space_flags(args, runs, base_space)
    devices = _devices(args)  # checked before the sweep directory is made
    if not args.out:
        args.out = str(new_run_dir("runs", "sweep"))
    res = run_grid(runs, args.out, {"space": base.get("space", "nb201"),
                                    "config": args.config},
                   workers=args.workers, devices=devices, progress=not args.quiet,
                   retry_failed=args.retry_failed, dry_run=args.dry_run)
    args.out = res["sweep"]
    return _print_sweep(args, res)


def _per_space_flags(args, runs, base_space: str) -> None:
    """A grid over spaces: --channels / --cells / --exclude-none set each run's own space's
    options (not the first space's), and without --dataset each space takes its default."""
    from ..search import resolve_dataset
    from ..spaces import SPACES
    base_flags = _space_flags(args, base_space)
    for r in runs:
        space = r.kwargs.get("space", base_space)
        if space == base_space or not isinstance(space, str):
            continue
        SPACES.get(space)
        for k, v in base_flags.items():
            if r.kwargs.get(k) == v:
                del r.kwargs[k]
        r.kwargs.update(_space_flags(args, space))
        if args.dataset is None and getattr(args, "config", None) is None:
            r.kwargs["dataset"] = resolve_dataset(SPACES.get(space), None)


def _list_option(key: str, strategies: list[str], space: str) -> bool:
    """Whether ``key`` (an option of one of ``strategies`` or of ``space``) takes a list."""
    from ..core.options import spec_for
    from ..methods import option_defaults
    from ..spaces import SPACES
    owner, _, name = key.rpartition(".")
    found = []
    if owner in ("", "strategy"):
        found += [spec_for(name, d[name]) for d in map(option_defaults, strategies)
                  if name in d]
    if owner in ("", "space") and space in SPACES and name in SPACES.get(space).options:
        found.append(spec_for(name, SPACES.get(space).options[name][0]))
    return any(spec.kind in ("floats", "ints", "strs") for spec in found)
