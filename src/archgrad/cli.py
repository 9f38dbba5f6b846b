"""The ``archgrad`` command line: a thin layer over the Python API.

    archgrad search | train | lookup | info | list

User errors print one line (``archgrad: error: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path

from .errors import ArchgradError, GenotypeError

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
    """``--set KEY=VALUE`` pairs; KEY may be prefixed ``space.`` or ``strategy.`` where a name
    belongs to both."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ArchgradError(f"--set expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise ArchgradError(f"--set expects KEY=VALUE, got {p!r}")
        if k in out and out[k] != _value(v.strip()):
            raise ArchgradError(f"--set {k} is given twice")
        out[k] = _value(v.strip())
    return out


def _merge_flags(opts: dict, flags: dict, names: dict) -> dict:
    """``opts`` (from --set) with the values of flags such as --channels; a key set both ways
    to different values is a clash."""
    out = dict(opts)
    for k, v in flags.items():
        for key in (k, f"space.{k}"):
            if key in out and out[key] != v:
                raise ArchgradError(f"{k} is given twice: --set {key}={out[key]!r} and "
                                    f"{names.get(k, k)} {v!r}; give it once")
        out.pop(f"space.{k}", None)
        out[k] = v
    return out


def _space_flags(args, space: str, build: bool = False) -> dict:
    from .spaces import SPACES
    cls = SPACES.get(space)
    accepted = cls.options
    flags = cls.build_flags if build else cls.search_flags
    out = {}
    args._flag_names = {}
    for flag in ("channels", "cells"):
        v = getattr(args, flag, None)
        if v is not None:
            keys = flags.get(flag)
            keys = (keys,) if isinstance(keys, str) or keys is None else keys
            if any(k is None or k not in accepted for k in keys):
                raise ArchgradError(f"space '{space}' has no --{flag}; its options: "
                                    f"{', '.join(sorted(accepted))} (set with --set KEY=VALUE)")
            for key in keys:  # one flag may set several sizes (an RNN's embedding and hidden)
                out[key] = v
                args._flag_names[key] = f"--{flag}"
    if getattr(args, "exclude_none", False):
        if "include_none" not in accepted:
            raise ArchgradError(f"space '{space}' has no 'none' candidate to exclude")
        out["include_none"] = False
        args._flag_names["include_none"] = "--exclude-none"
    return out


def _genotype_arg(p: argparse.ArgumentParser, help: str) -> None:
    """The genotype, as the positional GENOTYPE or as --genotype (every command that takes one
    accepts both)."""
    p.add_argument("genotype", nargs="?", default=None, metavar="GENOTYPE", help=help)
    p.add_argument("--genotype", dest="genotype_flag", default=None, metavar="GENOTYPE",
                   help="the genotype as a flag (the same as GENOTYPE)")


def _one_genotype(args) -> None:
    """Merge GENOTYPE and --genotype; a command other than train (whose configuration file may
    name it) needs one."""
    if not hasattr(args, "genotype_flag"):
        return
    pos, flag = args.genotype, args.genotype_flag
    if pos is not None and flag is not None and pos != flag:
        raise ArchgradError("two genotypes given (GENOTYPE and --genotype); give one")
    args.genotype = pos if pos is not None else flag
    if args.genotype is None and args.command != "train":
        raise ArchgradError(f"archgrad {args.command} needs a genotype: a genotype string, a "
                            f"named genotype (DARTS_V2, ...) or a search run directory, as "
                            f"GENOTYPE or --genotype")


def _seed(text: str) -> int:
    from .rundir import MAX_SEED
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, {MAX_SEED}], got {v}")
    return v


def _number(lo: float | None = None, lo_open: bool = False):
    def parse(text: str) -> float:
        import math
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v <= lo))):
            rng = "" if lo is None else f" {'>' if lo_open else '>='} {lo:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number{rng}, got {text}")
        return v
    return parse


def _path(text: str) -> str:
    from .rundir import path_problem
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    problem = path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


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
                   help="width, per space: nb201 C (first stage); darts C (search) or eval_C "
                        "(train); darts-rnn ninp and nhid (search) or eval_ninp and eval_nhid "
                        "(train); advantagenas-rnn nhid")
    p.add_argument("--cells", type=_positive, default=None,
                   help="depth, per space: nb201 N = cells per stage (3 stages); darts = cells "
                        "in all (layers in search, eval_layers in train; reductions at 1/3 and "
                        "2/3, at least 3); darts-rnn steps (nodes); advantagenas-rnn nodes; toy "
                        "= edges")
    p.add_argument("--data-dir", type=_path, default=None, help="directory holding the dataset "
                   "(default: $ARCHGRAD_DATA, then ./data)")
    p.add_argument("--subset", type=_positive, default=None,
                   help="use at most this many examples of each split (cheap proxies)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda "
                   "when available)")
    p.add_argument("--seed", type=_seed, default=None, help="random seed (default 0); a CPU "
                   "run with the same seed repeats exactly")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any space or strategy option, e.g. --set arch_lr=1e-3 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                   help="mixed precision: the forward pass in bf16 or fp16 (fp16 with a loss "
                        "scaler); parameters, architecture and optimizers stay fp32")
    p.add_argument("--sync-bn", action="store_true", default=None,
                   help="under torchrun: batch norm with the statistics of the whole global "
                        "batch (SyncBN; default: each process's shard, as DDP has it)")
    p.add_argument("--tensorboard", action="store_true", help="also log to RUN/tensorboard "
                   "(needs the tensorboard package)")


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

    lk = sub.add_parser("lookup", help="NAS-Bench-201 figures of a genotype",
                        description="Ground truth from NAS-Bench-201's table (offline): accuracy "
                        "after 200 and 12 epochs, rank and percentile among all 15625 cells.")
    _genotype_arg(lk, "NAS-Bench-201 genotype string or a search run directory")
    lk.add_argument("--dataset", default="cifar10",
                    help="cifar10, cifar10-valid, cifar100 or ImageNet16-120 (default cifar10)")
    lk.add_argument("--json", action="store_true", help="print JSON")
    lk.set_defaults(func=cmd_lookup)

    inf = sub.add_parser("info", help="parameters and FLOPs of a genotype's network",
                         description="Parameter count and multiply-accumulates of the "
                         "stand-alone network of a genotype (those of convolutions and linear "
                         "layers, for one input; normalisation, pooling and additions are not "
                         "counted).")
    _genotype_arg(inf, "genotype string or a search run directory")
    inf.add_argument("--space", default=None, help="search space (default: the run's, else "
                     "nb201)")
    inf.add_argument("--channels", type=_positive, default=None, help="C")
    inf.add_argument("--cells", type=_positive, default=None, help="N")
    inf.add_argument("--num-classes", type=_positive, default=None,
                     help="classes (default: the network's, 10; 1000 for darts' imagenet)")
    inf.add_argument("--in-channels", type=_positive, default=None, help="input channels (3)")
    inf.add_argument("--image-size", type=_positive, default=None,
                     help="input size (default 32; 224 for darts --set network=imagenet)")
    inf.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="space options, e.g. --set network=imagenet (repeatable)")
    inf.add_argument("--json", action="store_true", help="print JSON")
    inf.set_defaults(func=cmd_info)

    ex = sub.add_parser("export", help="save a genotype's stand-alone network",
                        description="Write OUT.pt (state_dict with the genotype; "
                        "archgrad.load_model) and OUT.pt2 (torch.export program; "
                        "torch.export.load(path).module() without archgrad). Weights: a "
                        "training run directory's, else freshly initialised.")
    _genotype_arg(ex, "genotype string, named genotype, search run directory "
                    "or training run directory")
    ex.add_argument("--space", default=None, help="search space (default: the run's, else "
                    "nb201)")
    ex.add_argument("--channels", type=_positive, default=None, help="C")
    ex.add_argument("--cells", type=_positive, default=None, help="N")
    ex.add_argument("--image-size", type=_positive, default=None, help="input size (32)")
    ex.add_argument("--set", action="append", metavar="KEY=VALUE", help="space options")
    ex.add_argument("--out", type=_path, default="model", help="output path without suffix")
    ex.set_defaults(func=cmd_export)

    dr = sub.add_parser("draw", help="draw a genotype's cells (PNG and SVG)",
                        description="Draw the cells of a genotype like the DARTS paper's figures.")
    _genotype_arg(dr, "genotype string, a named genotype (DARTS_V2, ...) or a "
                    "search run directory")
    dr.add_argument("--space", default=None, help="space of the genotype (default: the run's, "
                    "else nb201)")
    dr.add_argument("--out", type=_path, default="cell",
                    help="output path without suffix (default: cell)")
    dr.set_defaults(func=cmd_draw)

    cp = sub.add_parser("compare", help="compare search runs: a table and per-epoch plots",
                        description="Write OUT.md (final results of each run) and OUT.png/.svg "
                        "(validation accuracy, training loss, entropy and, on nb201, the "
                        "benchmark accuracy of the derived cell, per epoch).")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", type=_path,
                    help="search run directories (a sweep's directory stands for its runs)")
    cp.add_argument("--out", type=_path, default="compare", help="output path without suffix")
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(func=cmd_compare)

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

    rp = sub.add_parser("reproduce", help="run a paper's protocol and report beside it",
                        description="Run a shipped protocol (its strategies x seeds with its "
                        "settings) as a sweep and write the report beside the published "
                        "figures. `archgrad reproduce --list` lists the protocols.")
    rp.add_argument("protocol", nargs="?", default=None, help="protocol name or TOML file")
    rp.add_argument("--list", action="store_true", help="list the shipped protocols (with a "
                    "PROTOCOL: that one, with its settings and scales)")
    rp.add_argument("--show", action="store_true", help="print the protocol's TOML (a start "
                    "for a file of your own) and run nothing")
    rp.add_argument("--scale", default="full", choices=["full", "proxy", "tiny"],
                    help="full (the paper's), proxy (about an hour on a 2-core CPU) or tiny "
                         "(seconds)")
    rp.add_argument("--seeds", nargs="+", type=_seed, default=None, metavar="SEED",
                    help="seeds (default: the protocol's)")
    rp.add_argument("--strategies", nargs="+", default=None, metavar="NAME",
                    help="a subset of the protocol's strategies")
    rp.add_argument("--data-dir", type=_path, default=None, help="directory holding the dataset")
    rp.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    rp.add_argument("--json", action="store_true", help="print JSON")
    _sweep_flags(rp)
    rp.set_defaults(func=cmd_reproduce)

    rr = sub.add_parser("report", help="the report of a sweep (also of a partial one)",
                        description="Write SWEEP_DIR/report.md, report.csv and report.png from "
                        "the runs finished so far.")
    rr.add_argument("sweep", metavar="SWEEP_DIR", type=_path)
    rr.add_argument("--out", type=_path, default=None,
                    help="directory for the report (default: the sweep's)")
    rr.add_argument("--json", action="store_true", help="print JSON")
    rr.set_defaults(func=cmd_report)

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


def _print_search_summary(result) -> None:
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


def cmd_search(args) -> int:
    from .rundir import new_run_dir
    from .search import search
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
        from . import dist
        if dist.launched() and not args.out:
            raise ArchgradError("under torchrun give --out RUN_DIR: every process must name "
                                "the same run directory")
        out = Path(args.out) if args.out else new_run_dir("runs", kw["space"], kw["strategy"],
                                                          kw["dataset"] or "")
        args.out = str(out)
        result = search(out=out, progress=not (args.quiet or args.json),
                        tensorboard=args.tensorboard, **kw)
    from . import dist
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
    _print_search_summary(result)
    return 0


def _dry_run(args) -> int:
    """What ``search`` would run, checked as it checks it; nothing is run or written."""
    from .search import plan_search
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
    from .methods import STRATEGIES
    from .search import resolve_dataset
    from .spaces import SPACES
    base: dict = {}
    if getattr(args, "config", None):
        from .protocols import config_search_kwargs
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


def cmd_train(args) -> int:
    from .rundir import new_run_dir
    from .train import train
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
            from .protocols import config_train_kwargs
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
        from .train import run_space
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
        from . import dist
        from .search import resolve_dataset
        from .spaces import SPACES
        from .train import run_data
        run_ds, run_dd = run_data(args.genotype)
        if args.dataset is None and run_ds:  # a search's cell: on the search's data
            args.dataset = run_ds
            args.data_dir = args.data_dir if args.data_dir is not None else run_dd
        dataset = resolve_dataset(SPACES.get(space), args.dataset)
        if args.dry_run:
            from .train import plan_train
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
        from .rundir import claimed
        res["run_dir"] = str(claimed(out))
    from . import dist
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


def _count(n: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _plan_memory(plan: dict) -> str:
    return f"about {plan['memory_gb']:.2f} GB" + (
        f" of the {plan['available_gb']:.1f} GB available" if plan["available_gb"] else "")


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


def _nb201_genotype_arg(value: str) -> str:
    """A NAS-Bench-201 genotype from ``value`` (a string or a search run directory of nb201)."""
    from .train import genotype_source, run_space
    if not isinstance(value, str) or not value.strip():
        raise ArchgradError("lookup needs a NAS-Bench-201 genotype such as "
                            "'|nor_conv_3x3~0|+|...|' or a search run directory; got an empty "
                            "string")
    src = run_space(value)
    if src is not None and src != "nb201":
        raise ArchgradError(f"{value} is a search of the '{src}' space, which has no benchmark "
                            f"table; lookup answers for NAS-Bench-201 (nb201) cells only")
    from .spaces import get_space
    if src is None:
        text = genotype_source(value)
        try:
            get_space("nb201").genotype(text.strip())
        except GenotypeError:
            from .train import spaces_of
            others = spaces_of(text.strip(), "nb201")
            if others:
                which = "spaces, which have" if len(others) > 1 else "space, which has"
                raise ArchgradError(f"that is a genotype of the {' and '.join(others)} {which} "
                                    f"no benchmark table; lookup answers for NAS-Bench-201 "
                                    f"(nb201) cells only") from None
            raise
        return text
    return genotype_source(value, lambda text: str(get_space("nb201").genotype(text)))


def cmd_lookup(args) -> int:
    from . import lookup
    res = lookup(_nb201_genotype_arg(args.genotype), args.dataset)
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


def _space_of(args, default: str = "nb201") -> str:
    from .train import run_space
    src = run_space(args.genotype) if isinstance(args.genotype, str) else None
    if args.space is None:
        return src or default
    if src is not None and src != args.space:
        raise ArchgradError(f"{args.genotype} is a search of the '{src}' space, not "
                            f"'{args.space}'")
    return args.space


def _build_space(args, space_name: str):
    from .spaces import SPACES, get_space
    opts = {}
    if getattr(args, "num_classes", None) is not None:
        opts["num_classes"] = args.num_classes
    if getattr(args, "in_channels", None) is not None:
        opts["in_channels"] = args.in_channels
    opts = _merge_flags(_sets(getattr(args, "set", None)), opts, {
        "num_classes": "--num-classes", "in_channels": "--in-channels"})
    opts = _merge_flags(opts, _space_flags(args, space_name, build=True),
                        getattr(args, "_flag_names", {}))
    accepted = SPACES.get(space_name).options
    unknown = sorted(k for k in opts if k not in accepted and k not in ("num_classes",
                                                                        "in_channels"))
    if unknown:
        raise ArchgradError(f"space '{space_name}' has no option {', '.join(unknown)}; it "
                            f"accepts {', '.join(sorted(accepted))}")
    return get_space(space_name, **{k: v for k, v in opts.items() if k in accepted})


def cmd_info(args) -> int:

    from .profile import describe
    from .train import genotype_source
    space_name = _space_of(args)
    sp = _build_space(args, space_name)
    g = genotype_source(args.genotype, sp.genotype)
    _image_flags_only_for_images(args, space_name, sp)
    _check_network_fits(sp, g, args.image_size)
    if sp.modality == "sequence":
        return _info_language_model(args, space_name, sp, g)
    shape = sp.input_shape(args.image_size)
    shown = "x".join(str(d) for d in shape)
    info = {"space": space_name, "genotype": str(g)}
    info.update(describe(sp.build(g), shape))
    return _show_info(args, info, [
        f"FLOPs (multiply-accumulates) for a {shown} input: "
        f"{info['flops'] / 1e6:.2f} M",
        f"memory access cost (SNAS Appendix F): {info['mac'] / 1e6:.2f} M"])


def _check_network_fits(sp, g, image_size=None) -> None:
    """Refuse in one line a stand-alone network that cannot be built here (estimated on the
    meta device for one input: an image, or one token of a language model)."""
    import torch

    from .memory import guarded
    if sp.modality == "sequence":
        from .data.text import StateBox, Window

        def run(m):
            return m.eval()(Window(torch.zeros(1, 1, dtype=torch.long, device="meta"), None,
                                   StateBox()))
        what, hint = f"the {sp.name} network", "use fewer --channels (or a smaller --set " \
            "vocab_size=)"
    else:
        shape = sp.input_shape(image_size)

        def run(m):
            return m.eval()(torch.empty(1, *shape, device="meta"))
        what = f"the {sp.name} network on a {'x'.join(str(d) for d in shape)} input"
        hint = "use a smaller --image-size or fewer --channels / --cells"
    guarded(lambda: sp.build(g), run, "cpu", what, hint, backward=False)


def _show_info(args, info: dict, lines: list[str]) -> int:
    """``info`` as JSON, or the network's name, genotype, parameters and ``lines``."""
    if args.json:
        _print_json(info)
        return 0
    print(f"{info['space']} {info['genotype']}")
    print(f"  parameters: {info['params']:,} ({info['params'] / 1e6:.3f} M)")
    for line in lines:
        print(f"  {line}")
    return 0


def _image_flags_only_for_images(args, space_name: str, sp) -> None:
    """--image-size, --in-channels and --num-classes describe images: refused for a language
    model rather than ignored."""
    if sp.modality != "sequence":
        return
    for flag in ("--image-size", "--in-channels", "--num-classes"):
        if getattr(args, flag[2:].replace("-", "_"), None) is not None:
            raise ArchgradError(f"{flag} applies to image networks; space '{space_name}' is a "
                                f"language model (its sizes: --set vocab_size=, ... as "
                                f"archgrad list spaces shows)")


def _info_language_model(args, space_name, sp, g) -> int:
    """A recurrent network: parameters and multiply-accumulates per token (embedding lookup
    free; the cell and the decoder's matrix products counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .data.text import StateBox, Window
    from .ops import count_parameters
    net = sp.build(g).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(Window(torch.zeros(1, 1, dtype=torch.long), None, StateBox()))
    info = {"space": space_name, "genotype": str(g), "params": count_parameters(net),
            "macs_per_token": int(fc.get_total_flops() // 2),
            "vocab_size": sp.config.get("vocab_size")}
    return _show_info(args, info, [
        f"multiply-accumulates per token (cell and decoder, {info['vocab_size']:,} words): "
        f"{info['macs_per_token'] / 1e6:.2f} M"])


def cmd_export(args) -> int:
    """The stand-alone network of a genotype: model.pt (state_dict + genotype) and model.pt2
    (torch.export). Weights from a training run directory, else freshly initialised."""

    from .rundir import existing_dir, load_checkpoint
    from .train import export_example, export_program, genotype_source, load_model, save_model
    src = existing_dir(args.genotype)
    if src is not None and (src / "model.pt").is_file():  # a training run: its trained weights
        net = load_model(src / "model.pt")
        ck = load_checkpoint(src / "model.pt")
        from .spaces import get_space
        sp = get_space(ck["space"], **ck["space_options"])
        g = ck["genotype"]
    else:
        space_name = _space_of(args)
        sp = _build_space(args, space_name)
        g = str(genotype_source(args.genotype, sp.genotype))
        _check_network_fits(sp, g, args.image_size)
        net = sp.build(g)
    _image_flags_only_for_images(args, sp.name, sp)
    out = Path(args.out)
    from .rundir import check_out_dir
    check_out_dir(out.parent if str(out.parent) else Path("."), "--out")
    save_model(net, sp, g, out.with_suffix(".pt"))
    example = export_example(net, sp, args.image_size)
    export_program(net, example, out.with_suffix(".pt2"))
    if isinstance(example, tuple):
        how = (f"prog(tokens (1, batch), state (batch, {example[1].size(-1)})) -> "
               f"(log-probabilities, state), one step per call")
    else:
        how = "input " + "x".join(str(d) for d in example.shape[1:])
    print(f"wrote {out.with_suffix('.pt')} (archgrad.load_model) and {out.with_suffix('.pt2')} "
          f"(prog = torch.export.load(path).module(); {how})")
    return 0


def cmd_draw(args) -> int:
    from .plot import draw
    from .spaces import get_space
    from .train import genotype_source, run_space
    space = args.space or run_space(args.genotype)
    g = genotype_source(args.genotype, get_space(space or "nb201").genotype)
    draw(g, args.out, str(args.genotype) if len(str(args.genotype)) < 40 else None)
    print(f"wrote {args.out}.png and {args.out}.svg")
    return 0


def cmd_compare(args) -> int:
    from .report import compare
    res = compare(args.runs, args.out)
    if args.json:
        _print_json(res)
    else:
        for note in res["skipped"]:
            print(f"skipped {note}")
        n = res["runs"]
        svg = str(Path(res["figure"]).with_suffix(".svg"))
        print(f"wrote {res['table']}, {res['figure']} and {svg} ({n} run{'s' if n != 1 else ''})")
    return 0


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
    from .search import resolve_device
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
    from .rundir import new_run_dir
    from .sweep import grid, run_grid
    if args.seed is not None:
        raise ArchgradError("a sweep takes --seeds (a list); drop --seed")
    proto = None
    if getattr(args, "config", None):
        from .protocols import load
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
    from .search import resolve_dataset
    from .spaces import SPACES
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
    from .methods import option_defaults
    from .options import spec_for
    from .spaces import SPACES
    owner, _, name = key.rpartition(".")
    found = []
    if owner in ("", "strategy"):
        found += [spec_for(name, d[name]) for d in map(option_defaults, strategies)
                  if name in d]
    if owner in ("", "space") and space in SPACES and name in SPACES.get(space).options:
        found.append(spec_for(name, SPACES.get(space).options[name][0]))
    return any(spec.kind in ("floats", "ints", "strs") for spec in found)


def cmd_reproduce(args) -> int:
    from .protocols import load, names
    if args.list:
        rows = []
        for n in [args.protocol] if args.protocol else names():  # one, when named
            p = load(n)
            rows.append({"name": n, "title": p.title, "source": p.source,
                         "strategies": p.strategies, "seeds": p.seeds,
                         "scales": ["full"] + sorted(p.scale),
                         "description": p.description.strip(),
                         "scale_notes": {k: " ".join(str(v.get("note", "")).split())
                                         for k, v in sorted(p.scale.items())}})
        if args.json:
            _print_json(rows)
            return 0
        for r in rows:
            print(f"{r['name']}: {r['title']}")
            print(f"    source: {r['source']}")
            print(f"    strategies: {', '.join(r['strategies'])}; seeds {r['seeds']}; scales "
                  f"{', '.join(r['scales'])}")
            if args.protocol:  # one protocol: what it runs, and what each scale changes
                print("", *(f"    {x}" for x in r["description"].splitlines()), sep="\n")
                for k, note in r["scale_notes"].items():
                    print(f"    scale {k}: {note}")
        return 0
    if not args.protocol:
        raise ArchgradError("archgrad reproduce needs a protocol (archgrad reproduce --list)")
    if args.show:
        from .protocols import source_text
        load(args.protocol)  # checked: what is shown runs
        sys.stdout.write(source_text(args.protocol)[0].decode("utf-8"))
        return 0
    from .rundir import new_run_dir
    from .sweep import reproduce
    proto = load(args.protocol).at_scale(args.scale)
    devices = _devices(args)  # checked before the sweep directory is made
    if not args.out:  # named here, so that an interrupted run can say where it is
        args.out = str(new_run_dir("runs", "reproduce", proto.name, args.scale))
    res = reproduce(args.protocol, args.scale, seeds=args.seeds, strategies=args.strategies,
                    out=args.out, data_dir=args.data_dir, workers=args.workers,
                    devices=devices, progress=not args.quiet, retry_failed=args.retry_failed,
                    dry_run=args.dry_run)
    args.out = res["sweep"]
    return _print_sweep(args, res)


def cmd_report(args) -> int:
    from .report import sweep_report
    rep = sweep_report(args.sweep, args.out)
    if args.json:
        _print_json(rep)
        return 0
    print(f"wrote {rep['report']}, {rep['csv']}" + (f" and {rep['figure']}" if rep["figure"]
                                                    else "")
          + f" ({rep['finished']} of {rep['runs']} runs finished)")
    return 0


def cmd_list(args) -> int:
    from .data import DATASETS
    from .methods import STRATEGIES, option_help
    from .options import spec_for
    from .registry import first_paragraph
    from .spaces import SPACES
    data = {}
    if args.what in ("all", "spaces"):
        data["spaces"] = {}
        for n in SPACES:
            cls = SPACES.get(n)
            data["spaces"][n] = {
                "description": first_paragraph(cls.__doc__),
                "options": {k: {"help": doc, "default": d,
                                "accepts": spec_for(k, d).describe()}
                            for k, (d, doc) in cls.options.items()}}
    if args.what in ("all", "strategies"):
        order = ["darts", "relaxed", "gaea", "xnas", "score-function", "gates", "proximal",
                 "baseline"]
        names = sorted(STRATEGIES, key=lambda n: (order.index(STRATEGIES.get(n).family)
                                                  if STRATEGIES.get(n).family in order
                                                  else len(order), n))
        data["strategies"] = {n: {"description": STRATEGIES.get(n).doc,
                                  "family": STRATEGIES.get(n).family,
                                  "options": option_help(n)} for n in names}
    if args.what in ("all", "datasets"):
        data["datasets"] = {n: DATASETS.get(n).description for n in DATASETS}
    if args.json:
        _print_json(data)
        return 0
    for section, items in data.items():
        print(f"{section}:")
        for name, v in items.items():
            desc = v if isinstance(v, str) else v["description"]
            print(f"  {name:<18} {desc}")
            if isinstance(v, dict) and args.what != "all":
                for k, o in v["options"].items():
                    d = o["default"]
                    shown = "none" if d is None else (", ".join(map(str, d))
                                                      if isinstance(d, (list, tuple)) else d)
                    line = f"      {k} = {shown}  ({o['accepts']})"
                    print(line + (f": {o['help']}" if o["help"] else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    import signal
    parser = build_parser()
    args = parser.parse_args(argv)

    def terminate(signum, frame):  # SIGTERM ends a run like Ctrl-C: one line, resumable
        raise KeyboardInterrupt("SIGTERM")

    old = signal.signal(signal.SIGTERM, terminate) if _main_thread() else None
    threads = os.environ.get("ARCHGRAD_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:  # a sweep's share of the cores
        import torch
        torch.set_num_threads(int(threads))
    try:
        from .plugins import load
        load()  # strategies and spaces of $ARCHGRAD_PLUGINS and installed entry points
        _one_genotype(args)
        return args.func(args)
    except ArchgradError as e:
        return _refuse(e)
    except KeyboardInterrupt as e:
        from .rundir import claimed
        where = getattr(args, "out", None) or getattr(args, "resume", None)
        where = claimed(where) if where else where
        hint = f"; resume with: archgrad {args.command} --resume {where}" if where and \
            args.command in ("search", "train") else ""
        if args.command in ("sweep", "reproduce") and where:
            hint = (f"; {where} keeps its finished runs: run the same command with --out "
                    f"{where} to finish it")
        sig = "terminated" if str(e) == "SIGTERM" else "interrupted"
        print(f"archgrad: {sig}{hint}", file=sys.stderr)
        return 143 if sig == "terminated" else 130
    except BrokenPipeError:  # `archgrad list --json | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except OSError as e:  # a file the checks could not foresee: one line, not a traceback
        import errno
        bad_name = e.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTDIR)
        what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
        print(f"archgrad: error: {what}", file=sys.stderr)
        return 2 if bad_name else 1
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _refuse(e: ArchgradError) -> int:
    """Bad input: one line on stderr and the error's exit status. Under torchrun every process
    meets the same input, so the line is printed once per machine (local rank 0) and every
    process leaves at once with that status, before torchrun stops the slower ones with SIGTERM
    (its summary then lists exit status 2, not a signal)."""
    from .dist import launched
    if not launched():
        print(f"archgrad: error: {e}", file=sys.stderr)
        return e.exit_code
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(f"archgrad: error: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    _leave_together()
    os._exit(e.exit_code)


def _leave_together(wait_s: float = 10.0) -> None:
    """Under torchrun, wait (at most ``wait_s``) until every process has met the error, so that
    none is still running when the first leaves (torchrun would stop it with SIGTERM, and the
    one that prints the line might be stopped before it does)."""
    import time

    found = _launch_store()
    if found is None:
        return
    store, world = found
    try:
        store.add("archgrad/refused", 1)
        deadline = time.monotonic() + wait_s
        while store.add("archgrad/refused", 0) < world and time.monotonic() < deadline:
            time.sleep(0.02)
    except Exception:  # the store is gone or another process left: leave now
        pass


def _launch_store():
    """The key-value store the processes of this launch share: the process group's, or (before
    the group exists) torchrun's own; None outside a multi-process launch."""
    import datetime

    import torch.distributed as td
    if not td.is_available():
        return None
    try:
        if td.is_initialized():
            from torch.distributed.distributed_c10d import _get_default_store
            return _get_default_store(), td.get_world_size()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world < 2 or "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            return None
        store = td.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                            is_master=False, timeout=datetime.timedelta(seconds=5))
        return store, world
    except Exception:
        return None


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
