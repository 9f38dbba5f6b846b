"""``archgrad train``: retraining a genotype from scratch, and its dry run."""
from __future__ import annotations

from pathlib import Path

from ..errors import ArchgradError
from .common import (
    EPILOG_OPTIONS,
    _common,
    _count,
    _genotype_arg,
    _merge_flags,
    _nonneg,
    _number,
    _path,
    _plan_memory,
    _print_json,
    _sets,
    _space_flags,
)


def add(sub) -> None:
    """The ``train`` command's arguments."""
    t = sub.add_parser("train", help="train a genotype from scratch", epilog=EPILOG_OPTIONS,
                       description="Train a derived architecture from scratch and report its "
                       "test accuracy. Recipe defaults are the space's (NAS-Bench-201's own for "
                       "nb201).")
    t.add_argument("--space", default=None, help="search space of the genotype (default: the "
                   "run's, else nb201)")
    _genotype_arg(t, "genotype string, a named genotype (DARTS_V2, ...) or a search run "
                  "directory (its final genotype)")
    _common(t, epochs_help="training epochs (default: the space's recipe, 200 for nb201)")
    t.add_argument("--lr", type=_number(0.0, lo_open=True), default=None,
                   help="initial learning rate")
    t.add_argument("--weight-decay", type=_number(0.0), default=None, help="weight decay")
    t.add_argument("--out", type=_path, default=None, metavar="RUN_DIR",
                   help="directory for checkpoints and metrics (default: a new directory "
                   "under runs/)")
    t.add_argument("--resume", type=_path, default=None, metavar="RUN_DIR",
                   help="continue a training run")
    t.add_argument("--eval-every", type=_nonneg, default=0,
                   help="also report test accuracy every N epochs (default: only at the end)")
    t.add_argument("--config", type=_path, default=None, metavar="FILE",
                   help="a TOML file whose [train] table gives the space, genotype, dataset "
                        "and recipe (and [space] its options); flags given beside it win")
    t.add_argument("--dry-run", action="store_true",
                   help="check everything and print what the training would run (recipe, "
                        "steps, parameters, memory estimate); run and write nothing")
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from ..engine.train import train
    from ..runs.rundir import new_run_dir
    progress = not (args.quiet or args.json)
    if args.dry_run and args.resume:
        raise ArchgradError("--dry-run checks a new training run; drop --resume")
    if args.resume:
        clashes = [f"--{k.replace('_', '-')}" for k in
                   ("genotype", "dataset", "epochs", "batch_size", "channels", "cells", "subset",
                    "seed", "out", "set", "lr", "weight_decay", "amp", "sync_bn")
                   if getattr(args, k, None) not in (None, False, [])]
        if clashes:
            raise ArchgradError(f"--resume takes the configuration from RUN_DIR; drop "
                                f"{', '.join(clashes)}")
        res = train(None, None, resume=args.resume, device=args.device, data_dir=args.data_dir,
                    progress=progress)
        res["run_dir"] = str(args.resume)
    else:
        base: dict = {}
        if args.config:
            from ..protocols import config_train_kwargs
            cfg = config_train_kwargs(args.config)
            base = dict(cfg["train"])
            for k, v in cfg["space_options"].items():
                base.setdefault(k, v)
        genotype = args.genotype or base.pop("genotype", None)
        base.pop("genotype", None)
        if not genotype:
            raise ArchgradError("archgrad train needs a genotype: a genotype string, a named "
                                "genotype (DARTS_V2, ...) or a search run directory, as "
                                "GENOTYPE or --genotype" + (
                                    f", or genotype = \"...\" in the [train] table of "
                                    f"{args.config}" if args.config else ""))
        args.genotype = genotype
        space = args.space or base.pop("space", None)
        base.pop("space", None)
        from ..engine.train import run_space
        src = run_space(args.genotype)
        if src is not None and space is None:
            space = src
        space = space or "nb201"
        dataset_cfg = base.pop("dataset", None)
        seed_cfg = base.pop("seed", None)
        data_dir_cfg = base.pop("data_dir", None)
        opts = _merge_flags(_sets(args.set), _space_flags(args, space, build=True),
                            getattr(args, "_flag_names", {}))
        for k, v in base.items():  # the file's settings where no flag gives one
            opts.setdefault(k, v)
        if args.dataset is None and dataset_cfg:
            args.dataset = dataset_cfg
        if args.seed is None and seed_cfg is not None:
            args.seed = seed_cfg
        if args.data_dir is None and data_dir_cfg:
            args.data_dir = data_dir_cfg
        for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                          ("weight_decay", "weight_decay"), ("amp", "amp"),
                          ("sync_bn", "sync_bn")):
            if getattr(args, flag) is not None:
                if key in opts and opts[key] != getattr(args, flag):
                    raise ArchgradError(f"{key} is given twice: --set {key}={opts[key]!r} and "
                                        f"--{flag.replace('_', '-')} {getattr(args, flag)!r}")
                opts[key] = getattr(args, flag)
        from ..engine import dist
        from ..engine.train import run_data
        from ..search import resolve_dataset
        from ..spaces import SPACES
        run_ds, run_dd = run_data(args.genotype)
        if args.dataset is None and run_ds:  # a search's cell: on the search's data
            args.dataset = run_ds
            args.data_dir = args.data_dir if args.data_dir is not None else run_dd
        dataset = resolve_dataset(SPACES.get(space), args.dataset)
        if args.dry_run:
            from ..engine.train import plan_train
            return _print_train_plan(plan_train(
                space, args.genotype, dataset, seed=args.seed or 0, device=args.device,
                data_dir=args.data_dir, subset=args.subset, out=args.out,
                eval_every=args.eval_every, **opts), args.json)
        if dist.launched() and not args.out:
            raise ArchgradError("under torchrun give --out RUN_DIR: every process must name "
                                "the same run directory")
        out = Path(args.out) if args.out else new_run_dir("runs", "train", space, dataset)
        args.out = str(out)
        res = train(space, args.genotype, dataset, seed=args.seed or 0, device=args.device,
                    data_dir=args.data_dir, subset=args.subset, out=out,
                    eval_every=args.eval_every, progress=progress, **opts)
        from ..runs.rundir import claimed
        res["run_dir"] = str(claimed(out))
    from ..engine import dist
    main_rank = dist.context().main
    dist.teardown()
    if not main_rank:  # rank 0 reports
        return 0
    if args.json:
        _print_json({k: v for k, v in res.items() if k != "history"})
        return 0
    if res.get("already_finished"):
        print(f"{res['run_dir']} is finished ({_count(res['epochs'], 'epoch')}); nothing to do")
    print(f"genotype: {res['genotype']}")
    print(f"parameters: {res['params']:,}")
    if "test_acc" in res:
        n = res["epochs"]
        print(f"test accuracy: {res['test_acc']:.2f}% after {n} epoch{'s' if n != 1 else ''} "
              f"({res['train_time_s']:.1f} s)")
    if "test_ppl" in res:
        n = res["epochs"]
        print(f"perplexity: validation {res['valid_ppl']:.2f} (batch {res['eval_batch_size']}), "
              f"test {res['test_ppl']:.2f} (batch {res['test_batch_size']}), "
              f"{res['selected']}, after {n} epoch{'s' if n != 1 else ''} "
              f"({res['train_time_s']:.1f} s)")
    if res.get("exported"):
        print(f"model: {res['run_dir']}/model.pt (archgrad.load_model) and "
              f"{res['run_dir']}/model.pt2 (torch.export.load(...).module(), no archgrad "
              f"needed)")
    return 0


def _print_train_plan(plan: dict, as_json: bool) -> int:
    if as_json:
        _print_json(plan)
        return 0
    mem = _plan_memory(plan)
    print(f"train {plan['space']} on {plan['dataset']} ({plan['device']}): "
          f"{_count(plan['epochs'], 'epoch')} x {_count(plan['steps_per_epoch'], 'step')} "
          f"(batch {plan['batch_size']}) = {_count(plan['steps'], 'step')}")
    print(f"genotype: {plan['genotype']}")
    print(f"network: {plan['params']:,} parameters; memory: {mem}")
    for what, label in (("recipe", "recipe"), ("space_options", "network options")):
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in plan[what].items()))
    print("nothing was run or written (--dry-run)")
    return 0
