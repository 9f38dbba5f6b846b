"""What the commands share: the one-line parser, argument types, the common flags, --set."""
from __future__ import annotations

import argparse
import ast
import json

from ..errors import ArchgradError

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
    from ..spaces import SPACES
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
    from ..runs.rundir import MAX_SEED
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
    from ..runs.rundir import path_problem
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


# ----------------------------------------------------------------------------------------------
def _print_json(obj):
    from ..runs.rundir import to_jsonable
    print(json.dumps(to_jsonable(obj), indent=2))


def _count(n: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _plan_memory(plan: dict) -> str:
    return f"about {plan['memory_gb']:.2f} GB" + (
        f" of the {plan['available_gb']:.1f} GB available" if plan["available_gb"] else "")


def _space_of(args, default: str = "nb201") -> str:
    from ..engine.train import run_space
    src = run_space(args.genotype) if isinstance(args.genotype, str) else None
    if args.space is None:
        return src or default
    if src is not None and src != args.space:
        raise ArchgradError(f"{args.genotype} is a search of the '{src}' space, not "
                            f"'{args.space}'")
    return args.space


def _build_space(args, space_name: str):
    from ..spaces import SPACES, get_space
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
