"""``archgrad search``: a search, its dry run and the summary it prints."""
from __future__ import annotations

from pathlib import Path

from ..errors import ArchgradError
from .common import (
    EPILOG_OPTIONS,
    _common,
    _count,
    _merge_flags,
    _nonneg,
    _path,
    _plan_memory,
    _print_json,
    _sets,
    _space_flags,
)


def add(sub) -> None:
    """The ``search`` command's arguments."""
    s = sub.add_parser("search", help="search an architecture", epilog=EPILOG_OPTIONS,
                       description="Search a cell with a strategy; writes a run directory "
                       "(config.json, metrics.jsonl, checkpoint.pt, genotype.txt, result.json).")
    s.add_argument("--space", default=None, help="search space (default: nb201)")
    s.add_argument("--strategy", default=None, help="search strategy (default: darts; "
                   "`archgrad list strategies`)")
    _common(s, epochs_help="search epochs (default: 50, DARTS's budget; 10 on digits)")
    s.add_argument("--exclude-none", action="store_true",
                   help="remove the 'none' op from the candidates (AdvantageNAS's setting)")
    s.add_argument("--out", type=_path, default=None, metavar="RUN_DIR",
                   help="run directory (default: a new directory under runs/)")
    s.add_argument("--resume", type=_path, default=None, metavar="RUN_DIR",
                   help="continue an interrupted search from its last checkpoint")
    s.add_argument("--eval-every", type=_nonneg, default=None,
                   help="evaluate the supernet on the validation half every N epochs "
                        "(default 1; 0: only at the end)")
    s.add_argument("--config", type=_path, default=None, metavar="FILE|PROTOCOL",
                   help="settings from a TOML file or a shipped protocol (`archgrad reproduce "
                        "--list`); with a protocol, --strategy picks its strategy's settings; "
                        "flags given beside it win")
    s.add_argument("--dry-run", action="store_true",
                   help="check everything and print what the search would run (settings, "
                        "steps, architecture steps, memory estimate); run and write nothing")
    s.set_defaults(func=cmd_search)


def _print_search_summary(result, quiet: bool = False) -> None:
    f = result.final
    print(f"run directory: {result.run_dir}")
    print(f"genotype ({f['derive']}): {result.genotype}")
    if f.get("teacher") is not None:
        print(f"teacher (a*): {f['teacher']}   found: {'yes' if f['found_teacher'] else 'no'} "
              f"({f['edges_right']} edges right)")
    print(f"distribution: entropy {f['entropy']:.3f} nats, largest probability per edge "
          f"{f['max_prob']:.2f} on average")
    if f["gap_metric"] == "acc":
        print(f"supernet valid acc {f['supernet_valid_acc']:.2f}% ({f['supernet_eval']}); "
              f"derived architecture with the shared weights {f['derived_valid_acc_bn']:.2f}% "
              f"with BN statistics recalibrated ({f['derived_valid_acc']:.2f}% without); "
              f"discretization gap {f['discretization_gap_bn']:+.2f} points")
    elif f.get("supernet_valid_ppl") is not None:  # a language model
        def ppl(x):  # a diverged perplexity (up to 1e304) in short form
            return "n/a" if x is None else f"{x:.2f}" if x < 1e5 else f"{x:.3g}"

        bn = f.get("derived_valid_ppl_bn")
        derived = ppl(f["derived_valid_ppl"]) if bn is None or bn == f["derived_valid_ppl"] \
            else (f"{ppl(bn)} with BN statistics recalibrated "
                  f"({ppl(f['derived_valid_ppl'])} without)")
        print(f"supernet valid perplexity {ppl(f['supernet_valid_ppl'])} on {f['eval_split']} "
              f"({f['supernet_eval']}); derived architecture with the shared weights {derived}")
    else:
        print(f"supernet valid loss {f['supernet_valid_loss']:.5g}   derived architecture "
              f"{f['derived_valid_loss']:.5g}")
    if f.get("benchmark"):
        b = f["benchmark"]
        print(f"NAS-Bench-201: cifar10 {b['cifar10']:.2f}%  cifar100 {b['cifar100']:.2f}%  "
              f"ImageNet16-120 {b['ImageNet16-120']:.2f}%  (cifar10 rank {b['cifar10_rank']} "
              f"of 15625, top {100 * b['cifar10_rank'] / 15625:.1f}%)")
    n = f["epochs"]
    print(f"search time {f['search_time_s']:.1f} s over {n} epoch{'s' if n != 1 else ''}")
    if not quiet:
        _print_what_it_means(result)


def _print_what_it_means(result) -> None:
    """Two lines for a newcomer: how to read the figures above, and what to run next."""
    f, run = result.final, result.run_dir
    meaning = ("what it means: the genotype is the cell this search chose. The supernet's "
               "figure is the mixture of every candidate with the shared weights; the derived "
               "cell's, with the same weights, is often far lower (the discretization gap: the "
               "weights were trained for the mixture, not for one cell), so neither is the "
               "cell's own accuracy: train it from scratch for that")
    if f.get("benchmark"):
        meaning += ", or read it above from NAS-Bench-201's table (the cell trained 200 epochs " \
                   "on CIFAR-10/100 and ImageNet16-120; rank 1 is the best of 15,625)"
    print(meaning + ".")
    nxt = [f"archgrad train --genotype {run} --epochs 30", f"archgrad draw {run}"]
    if f.get("benchmark"):
        nxt.insert(1, f"archgrad lookup {run} --dataset cifar100")
    print("next: " + "   |   ".join(nxt) + "   (docs/cli.md)")


def cmd_search(args) -> int:
    from ..runs.rundir import new_run_dir
    from ..search import search
    if args.dry_run:
        return _dry_run(args)
    if args.resume:
        clashes = [f"--{k.replace('_', '-')}" for k in
                   ("space", "strategy", "dataset", "batch_size", "channels", "cells",
                    "subset", "seed", "out", "set", "eval_every", "config", "amp", "sync_bn")
                   if getattr(args, k, None) not in (None, False, [])]
        if args.exclude_none:
            clashes.append("--exclude-none")
        if clashes:
            raise ArchgradError(f"--resume takes the configuration from RUN_DIR/config.json; "
                                f"drop {', '.join(clashes)}")
        result = search(resume=args.resume, device=args.device, data_dir=args.data_dir,
                        epochs=args.epochs, progress=not (args.quiet or args.json),
                        tensorboard=args.tensorboard)
    else:
        kw = _search_kwargs(args)
        from ..engine import dist
        if dist.launched() and not args.out:
            raise ArchgradError("under torchrun give --out RUN_DIR: every process must name "
                                "the same run directory")
        out = Path(args.out) if args.out else new_run_dir("runs", kw["space"], kw["strategy"],
                                                          kw["dataset"] or "")
        args.out = str(out)
        result = search(out=out, progress=not (args.quiet or args.json),
                        tensorboard=args.tensorboard, **kw)
    from ..engine import dist
    if not dist.context().main:  # rank 0 reports
        dist.teardown()
        return 0
    dist.teardown()
    if getattr(result, "already_finished", False) and not args.json:
        print(f"{result.run_dir} is finished ({_count(result.config.epochs, 'epoch')}); "
              f"nothing to do")
    if args.json:
        _print_json({"run_dir": result.run_dir, **result.final,
                     "already_finished": getattr(result, "already_finished", False)})
        return 0
    _print_search_summary(result, quiet=args.quiet)
    return 0


def _dry_run(args) -> int:
    """What ``search`` would run, checked as it checks it; nothing is run or written."""
    from ..search import plan_search
    if args.resume:
        raise ArchgradError("--dry-run checks a new search; drop --resume")
    plan = plan_search(**_search_kwargs(args))
    if args.json:
        _print_json(plan)
        return 0
    mem = _plan_memory(plan)
    first = plan["first_arch_epoch"]
    print(f"search {plan['space']} / {plan['strategy']} on {plan['dataset']} ({plan['device']}): "
          f"{_count(plan['epochs'], 'epoch')} x {_count(plan['steps_per_epoch'], 'step')} "
          f"(batch {plan['batch_size']}) = {_count(plan['weight_steps'], 'weight step')}, "
          f"{_count(plan['arch_steps'], 'architecture step')}"
          + (f" (from epoch {first})" if first is not None and first > 1 else ""))
    print(f"memory: {mem} ({plan['device']})")
    if plan["stages"] > 1:
        print("stages: " + "; ".join(
            f"{i}: epochs {st['epochs'][0]}-{st['epochs'][1]}"
            + "".join(f", {k}={v}" for k, v in st["space"].items())
            for i, st in enumerate(plan["stage_plan"], 1)))
    for what in ("space", "strategy"):
        opts = ", ".join(f"{k}={v}" for k, v in plan[f"{what}_options"].items())
        print(f"{what}: {opts}")
    print("nothing was run or written (--dry-run)")
    return 0


def _search_kwargs(args) -> dict:
    """The keyword arguments of ``search`` from the command line (and a config file)."""
    from ..methods import STRATEGIES
    from ..search import resolve_dataset
    from ..spaces import SPACES
    base: dict = {}
    if getattr(args, "config", None):
        from ..protocols import config_search_kwargs
        base = config_search_kwargs(args.config, getattr(args, "strategy", None))
    space = args.space or base.pop("space", None) or "nb201"
    strategy = getattr(args, "strategy", None) or base.pop("strategy", None) or "darts"
    base.pop("space", None)
    base.pop("strategy", None)
    dataset = args.dataset or base.pop("dataset", None)
    base.pop("dataset", None)
    dataset = resolve_dataset(SPACES.get(space), dataset)
    STRATEGIES.get(strategy)
    opts = dict(base.pop("options", {}))
    for k, v in _sets(args.set).items():
        opts[k] = v
    opts = _merge_flags(opts, _space_flags(args, space), getattr(args, "_flag_names", {}))
    # a flag given beside a configuration file wins over the file's value
    given = {k.split(".", 1)[-1] for k in opts}
    for part in ("space_options", "strategy_options"):
        if part in base:
            base[part] = {k: v for k, v in base[part].items() if k not in given}
    kw = dict(space=space, strategy=strategy, dataset=dataset, **opts)
    for key, flag in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed"),
                      ("data_dir", "data_dir"), ("subset", "subset"),
                      ("eval_every", "eval_every")):
        v = getattr(args, flag, None)
        if v is not None:
            kw[key] = v
        elif key in base:
            kw[key] = base[key]
    if getattr(args, "amp", None) or base.get("amp"):
        kw["amp"] = getattr(args, "amp", None) or base["amp"]
    if getattr(args, "sync_bn", None) or base.get("sync_bn"):
        kw["sync_bn"] = True
    kw["device"] = args.device if args.device != "auto" else base.get("device", "auto")
    for k in ("space_options", "strategy_options"):
        if base.get(k):
            kw[k] = base[k]
    return kw
