"""The ``archgrad`` command line: a thin layer over the Python API.

    archgrad search | train | lookup | info | export | draw | compare | sweep | reproduce
             | report | list

One module per command (each adds its arguments and runs them; ``list`` is ``listing``);
``common`` holds what they share.
User errors print one line (``archgrad: error: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import ArchgradError
from . import (
    compare,
    draw,
    export,
    info,
    listing,
    lookup,
    rank,
    report,
    reproduce,
    search,
    sweep,
    train,
)
from .common import _one_genotype, _Parser


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    ap = _Parser(prog="archgrad", description="Gradient-based one-shot neural architecture "
                 "search: any strategy on any space.")
    ap.add_argument("--version", action="version", version=f"archgrad {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in (search, train, lookup, info, export, draw, compare, rank, sweep, reproduce,
                report, listing):
        cmd.add(sub)
    return ap


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
        from ..plugins import load
        load()  # strategies and spaces of $ARCHGRAD_PLUGINS and installed entry points
        _one_genotype(args)
        return args.func(args)
    except ArchgradError as e:
        return _refuse(e)
    except KeyboardInterrupt as e:
        from ..runs.rundir import claimed
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
    from ..engine.dist import launched
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
