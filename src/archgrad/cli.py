"""The ``archgrad`` command line: a thin layer over the Python API.

    archgrad search | train | lookup | info | list

User errors print one line (``archgrad: error: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from .errors import ArchgradError

EPILOG_OPTIONS = ("Strategy and space options beyond the flags above are passed with "
                  "--set KEY=VALUE (repeatable); `archgrad list strategies` shows each "
                  "strategy's options.")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _value(text: str):
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            pass
    return text


def _sets(pairs: list[str] | None) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ArchgradError(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = _value(v.strip())
    return out


def _space_flags(args, space: str, build: bool = False) -> dict:
    from .spaces import SPACES
    cls = SPACES.get(space)
    accepted = cls.options
    flags = cls.build_flags if build else cls.search_flags
    out = {}
    for flag in ("channels", "cells"):
        v = getattr(args, flag, None)
        if v is not None:
            key = flags.get(flag)
            if key is None or key not in accepted:
                raise ArchgradError(f"space '{space}' has no --{flag}; its options: "
                                    f"{', '.join(sorted(accepted))} (set with --set KEY=VALUE)")
            out[key] = v
    if getattr(args, "exclude_none", False):
        if "include_none" not in accepted:
            raise ArchgradError(f"space '{space}' has no 'none' candidate to exclude")
        out["include_none"] = False
    return out


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def _common(p: argparse.ArgumentParser, *, epochs_help: str):
    p.add_argument("--dataset", default=None, help="dataset name (default: digits, bundled with "
                   "scikit-learn; `archgrad list datasets`)")
    p.add_argument("--epochs", type=_positive, default=None, help=epochs_help)
    p.add_argument("--batch-size", type=_positive, default=None, help="minibatch size")
    p.add_argument("--channels", type=_positive, default=None,
                   help="channels of the first stage (the space's C)")
    p.add_argument("--cells", type=_positive, default=None,
                   help="cells per stage (the space's N)")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset "
                   "(default: $ARCHGRAD_DATA, then ./data)")
    p.add_argument("--subset", type=_positive, default=None,
                   help="use at most this many examples of each split (cheap proxies)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda "
                   "when available)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0); a CPU run "
                   "with the same seed repeats exactly")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any space or strategy option, e.g. --set arch_lr=1e-3 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    ap = _Parser(prog="archgrad", description="Gradient-based one-shot neural architecture "
                 "search: any strategy on any space.")
    ap.add_argument("--version", action="version", version=f"archgrad {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("search", help="search an architecture", epilog=EPILOG_OPTIONS,
                       description="Search a cell with a strategy; writes a run directory "
                       "(config.json, metrics.jsonl, checkpoint.pt, genotype.txt, result.json).")
    s.add_argument("--space", default=None, help="search space (default: nb201)")
    s.add_argument("--strategy", default=None, help="search strategy (default: darts; "
                   "`archgrad list strategies`)")
    _common(s, epochs_help="search epochs (default: 50, DARTS's budget; 10 on digits)")
    s.add_argument("--exclude-none", action="store_true",
                   help="remove the 'none' op from the candidates (AdvantageNAS's setting)")
    s.add_argument("--out", default=None, metavar="RUN_DIR",
                   help="run directory (default: a new directory under runs/)")
    s.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted search from its last checkpoint")
    s.add_argument("--eval-every", type=_nonneg, default=None,
                   help="evaluate the supernet on the validation half every N epochs "
                        "(default 1; 0: only at the end)")
    s.set_defaults(func=cmd_search)

    t = sub.add_parser("train", help="train a genotype from scratch", epilog=EPILOG_OPTIONS,
                       description="Train a derived architecture from scratch and report its "
                       "test accuracy. Recipe defaults are the space's (NAS-Bench-201's own for "
                       "nb201).")
    t.add_argument("--space", default="nb201", help="search space of the genotype")
    t.add_argument("--genotype", required=False, default=None,
                   help="genotype string, or a search run directory (its final genotype)")
    _common(t, epochs_help="training epochs (default: the space's recipe, 200 for nb201)")
    t.add_argument("--lr", type=float, default=None, help="initial learning rate")
    t.add_argument("--weight-decay", type=float, default=None, help="weight decay")
    t.add_argument("--out", default=None, metavar="RUN_DIR", help="directory for checkpoints "
                   "and metrics (default: a new directory under runs/)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a training run")
    t.add_argument("--eval-every", type=_nonneg, default=0,
                   help="also report test accuracy every N epochs (default: only at the end)")
    t.set_defaults(func=cmd_train)

    lk = sub.add_parser("lookup", help="NAS-Bench-201 figures of a genotype",
                        description="Ground truth from NAS-Bench-201's table (offline): accuracy "
                        "after 200 and 12 epochs, rank and percentile among all 15625 cells.")
    lk.add_argument("genotype", help="NAS-Bench-201 genotype string or a search run directory")
    lk.add_argument("--dataset", default="cifar10",
                    help="cifar10, cifar10-valid, cifar100 or ImageNet16-120 (default cifar10)")
    lk.add_argument("--json", action="store_true", help="print JSON")
    lk.set_defaults(func=cmd_lookup)

    inf = sub.add_parser("info", help="parameters and FLOPs of a genotype's network",
                         description="Parameter count and multiply-accumulates of the "
                         "stand-alone network of a genotype.")
    inf.add_argument("genotype", help="genotype string or a search run directory")
    inf.add_argument("--space", default="nb201", help="search space (default nb201)")
    inf.add_argument("--channels", type=_positive, default=None, help="C")
    inf.add_argument("--cells", type=_positive, default=None, help="N")
    inf.add_argument("--num-classes", type=_positive, default=10, help="classes (default 10)")
    inf.add_argument("--in-channels", type=_positive, default=3, help="input channels (3)")
    inf.add_argument("--image-size", type=_positive, default=None,
                     help="input size (default 32; 224 for darts --set network=imagenet)")
    inf.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="space options, e.g. --set network=imagenet (repeatable)")
    inf.add_argument("--json", action="store_true", help="print JSON")
    inf.set_defaults(func=cmd_info)

    dr = sub.add_parser("draw", help="draw a genotype's cells (PNG and SVG)",
                        description="Draw the cells of a genotype like the DARTS paper's figures.")
    dr.add_argument("genotype", help="genotype string, a named genotype (DARTS_V2, ...) or a "
                    "search run directory")
    dr.add_argument("--space", default=None, help="space of the genotype (default: the run's, "
                    "else nb201)")
    dr.add_argument("--out", default="cell", help="output path without suffix (default: cell)")
    dr.set_defaults(func=cmd_draw)

    cp = sub.add_parser("compare", help="compare search runs: a table and per-epoch plots",
                        description="Write OUT.md (final results of each run) and OUT.png/.svg "
                        "(validation accuracy, training loss, entropy and, on nb201, the "
                        "benchmark accuracy of the derived cell, per epoch).")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search run directories")
    cp.add_argument("--out", default="compare", help="output path without suffix")
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="list spaces, strategies and datasets")
    ls.add_argument("what", nargs="?", default="all",
                    choices=["all", "spaces", "strategies", "datasets"])
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)
    return ap


# ----------------------------------------------------------------------------------------------
def _print_json(obj):
    from .rundir import to_jsonable
    print(json.dumps(to_jsonable(obj), indent=2))


def cmd_search(args) -> int:
    from .rundir import new_run_dir
    from .search import search
    if args.resume:
        clashes = [f"--{k.replace('_', '-')}" for k in
                   ("space", "strategy", "dataset", "epochs", "batch_size", "channels", "cells",
                    "subset", "seed", "out", "set", "eval_every")
                   if getattr(args, k) not in (None, False, [])]
        if args.exclude_none:
            clashes.append("--exclude-none")
        if clashes:
            raise ArchgradError(f"--resume takes the configuration from RUN_DIR/config.json; "
                                f"drop {', '.join(clashes)}")
        result = search(resume=args.resume, device=args.device, data_dir=args.data_dir,
                        progress=not (args.quiet or args.json))
    else:
        space = args.space or "nb201"
        strategy = args.strategy or "darts"
        from .methods import STRATEGIES
        from .search import resolve_dataset
        from .spaces import SPACES
        dataset = resolve_dataset(SPACES.get(space), args.dataset)
        STRATEGIES.get(strategy)
        opts = _sets(args.set)
        opts.update(_space_flags(args, space))
        out = Path(args.out) if args.out else new_run_dir("runs", space, strategy, dataset)
        args.out = str(out)
        result = search(space, strategy, dataset, epochs=args.epochs,
                        batch_size=args.batch_size, seed=args.seed or 0,
                        device=args.device, data_dir=args.data_dir, subset=args.subset, out=out,
                        eval_every=1 if args.eval_every is None else args.eval_every,
                        progress=not (args.quiet or args.json), **opts)
    if args.json:
        _print_json({"run_dir": result.run_dir, **result.final})
        return 0
    f = result.final
    print(f"run directory: {result.run_dir}")
    print(f"genotype ({f['derive']}): {result.genotype}")
    if f["gap_metric"] == "acc":
        print(f"supernet valid acc {f['supernet_valid_acc']:.2f}%   derived architecture with "
              f"shared weights {f['derived_valid_acc']:.2f}% ({f['derived_valid_acc_bn']:.2f}% "
              f"with BN statistics recalibrated)   discretization gap "
              f"{f['discretization_gap']:+.2f} ({f['discretization_gap_bn']:+.2f}) points")
    else:
        print(f"supernet valid loss {f['supernet_valid_loss']:.5g}   derived architecture "
              f"{f['derived_valid_loss']:.5g}")
    if f.get("benchmark"):
        b = f["benchmark"]
        print(f"NAS-Bench-201: cifar10 {b['cifar10']:.2f}%  cifar100 {b['cifar100']:.2f}%  "
              f"ImageNet16-120 {b['ImageNet16-120']:.2f}%  (cifar10 rank {b['cifar10_rank']} "
              f"of 15625)")
    print(f"search time {f['search_time_s']:.1f} s over {f['epochs']} epochs")
    return 0


def cmd_train(args) -> int:
    from .rundir import new_run_dir
    from .train import train
    progress = not (args.quiet or args.json)
    if args.resume:
        clashes = [f"--{k.replace('_', '-')}" for k in
                   ("genotype", "dataset", "epochs", "batch_size", "channels", "cells", "subset",
                    "seed", "out", "set", "lr", "weight_decay")
                   if getattr(args, k) not in (None, False, [])]
        if clashes:
            raise ArchgradError(f"--resume takes the configuration from RUN_DIR; drop "
                                f"{', '.join(clashes)}")
        res = train(None, None, resume=args.resume, device=args.device, data_dir=args.data_dir,
                    progress=progress)
    else:
        if not args.genotype:
            raise ArchgradError("archgrad train needs --genotype (a genotype string or a search "
                                "run directory)")
        opts = _sets(args.set)
        opts.update(_space_flags(args, args.space, build=True))
        for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                          ("weight_decay", "weight_decay")):
            if getattr(args, flag) is not None:
                opts[key] = getattr(args, flag)
        dataset = args.dataset or "digits"
        out = Path(args.out) if args.out else new_run_dir("runs", "train", args.space, dataset)
        args.out = str(out)
        res = train(args.space, args.genotype, dataset, seed=args.seed or 0, device=args.device,
                    data_dir=args.data_dir, subset=args.subset, out=out,
                    eval_every=args.eval_every, progress=progress, **opts)
        res["run_dir"] = str(out)
    if args.json:
        _print_json({k: v for k, v in res.items() if k != "history"})
        return 0
    print(f"genotype: {res['genotype']}")
    print(f"parameters: {res['params']:,}")
    if "test_acc" in res:
        print(f"test accuracy: {res['test_acc']:.2f}% after {res['epochs']} epochs "
              f"({res['train_time_s']:.1f} s)")
    return 0


def cmd_lookup(args) -> int:
    from . import lookup
    from .train import genotype_source
    res = lookup(genotype_source(args.genotype), args.dataset)
    if args.json:
        _print_json(res)
        return 0
    print(f"{res['arch']}  (NAS-Bench-201 index {res['index']})")
    for k, v in res.items():
        if k in ("arch", "index", "dataset", "ranked_by", "rank", "percentile", "of"):
            continue
        print(f"  {res['dataset']} {k}: {v:.2f}%")
    print(f"  rank {res['rank']} of {res['of']} by {res['ranked_by']} accuracy "
          f"(percentile {res['percentile']:.2f})")
    return 0


def cmd_info(args) -> int:
    from .profile import describe
    from .spaces import SPACES, get_space
    from .train import genotype_source
    opts = {"num_classes": args.num_classes, "in_channels": args.in_channels}
    opts.update(_space_flags(args, args.space, build=True))
    opts.update(_sets(args.set))
    accepted = SPACES.get(args.space).options
    sp = get_space(args.space, **{k: v for k, v in opts.items() if k in accepted})
    g = sp.genotype(genotype_source(args.genotype))
    size = args.image_size or (224 if sp.config.get("network") == "imagenet" else 32)
    info = {"space": args.space, "genotype": str(g)}
    info.update(describe(sp.build(g), (args.in_channels, size, size)))
    if args.json:
        _print_json(info)
        return 0
    print(f"{args.space} {info['genotype']}")
    print(f"  parameters: {info['params']:,} ({info['params'] / 1e6:.3f} M)")
    print(f"  FLOPs (multiply-accumulates) for a {args.in_channels}x{size}x{size} input: "
          f"{info['flops'] / 1e6:.2f} M")
    print(f"  memory access cost (SNAS Appendix F): {info['mac'] / 1e6:.2f} M")
    return 0


def cmd_draw(args) -> int:
    from .plot import draw
    from .rundir import read_json
    from .spaces import get_space
    from .train import genotype_source
    space = args.space
    p = Path(args.genotype)
    if space is None and p.is_dir() and (p / "config.json").is_file():
        space = read_json(p / "config.json")["search"]["space"]
    g = get_space(space or "nb201").genotype(genotype_source(args.genotype))
    draw(g, args.out, str(args.genotype) if len(str(args.genotype)) < 40 else None)
    print(f"wrote {args.out}.png and {args.out}.svg")
    return 0


def cmd_compare(args) -> int:
    from .report import compare
    res = compare(args.runs, args.out)
    if args.json:
        _print_json(res)
    else:
        print(f"wrote {res['table']} and {res['figure']} ({res['runs']} runs)")
    return 0


def cmd_list(args) -> int:
    from .data import DATASETS
    from .methods import STRATEGIES, accepted_options
    from .spaces import SPACES
    data = {}
    from .registry import first_paragraph
    if args.what in ("all", "spaces"):
        data["spaces"] = {n: {"description": first_paragraph(SPACES.get(n).__doc__),
                              "options": SPACES.get(n).describe_options()} for n in SPACES}
    if args.what in ("all", "strategies"):
        order = ["darts", "relaxed", "gaea", "xnas", "score-function", "gates", "proximal",
                 "baseline"]
        names = sorted(STRATEGIES, key=lambda n: (order.index(STRATEGIES.get(n).family)
                                                  if STRATEGIES.get(n).family in order
                                                  else len(order), n))
        data["strategies"] = {n: {"description": STRATEGIES.get(n).doc,
                                  "family": STRATEGIES.get(n).family,
                                  "options": accepted_options(n)} for n in names}
    if args.what in ("all", "datasets"):
        data["datasets"] = {n: DATASETS.get(n).description for n in DATASETS}
    if args.json:
        _print_json(data)
        return 0
    for section, items in data.items():
        print(f"{section}:")
        for name, v in items.items():
            desc = v if isinstance(v, str) else v["description"]
            print(f"  {name:<16} {desc}")
            if isinstance(v, dict) and args.what != "all":
                opts = v["options"]
                if isinstance(opts, dict):
                    for k, d in opts.items():
                        print(f"      {k}: {d}")
                else:
                    print(f"      options: {', '.join(opts)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ArchgradError as e:
        print(f"archgrad: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or getattr(args, "resume", None)
        hint = f"; resume with: archgrad {args.command} --resume {where}" if where else ""
        print(f"archgrad: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
