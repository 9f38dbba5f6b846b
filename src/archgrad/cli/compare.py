"""``archgrad compare``: a table and per-epoch plots of several runs."""
from __future__ import annotations

from pathlib import Path

from .common import _path, _print_json


def add(sub) -> None:
    """The ``compare`` command's arguments."""
    cp = sub.add_parser("compare", help="compare search runs: a table and per-epoch plots",
                        description="Write OUT.md (final results of each run) and OUT.png/.svg "
                        "(validation accuracy, training loss, entropy and, on nb201, the "
                        "benchmark accuracy of the derived cell, per epoch).")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", type=_path,
                    help="search run directories (a sweep's directory stands for its runs)")
    cp.add_argument("--out", type=_path, default="compare", help="output path without suffix")
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from ..experiments.report import compare
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
