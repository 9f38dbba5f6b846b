"""``archgrad report``: the report of a (partial) sweep."""
from __future__ import annotations

from .common import _path, _print_json


def add(sub) -> None:
    """The ``report`` command's arguments."""
    rr = sub.add_parser("report", help="the report of a sweep (also of a partial one)",
                        description="Write SWEEP_DIR/report.md, report.csv and report.png from "
                        "the runs finished so far.")
    rr.add_argument("sweep", metavar="SWEEP_DIR", type=_path)
    rr.add_argument("--out", type=_path, default=None,
                    help="directory for the report (default: the sweep's)")
    rr.add_argument("--json", action="store_true", help="print JSON")
    rr.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ..experiments.report import sweep_report
    rep = sweep_report(args.sweep, args.out)
    if args.json:
        _print_json(rep)
        return 0
    print(f"wrote {rep['report']}, {rep['csv']}" + (f" and {rep['figure']}" if rep["figure"]
                                                    else "")
          + f" ({rep['finished']} of {rep['runs']} runs finished)")
    return 0
