"""``archgrad list``: spaces, strategies and datasets."""
from __future__ import annotations

from .common import _print_json


def add(sub) -> None:
    """The ``list`` command's arguments."""
    ls = sub.add_parser("list", help="list spaces, strategies and datasets")
    ls.add_argument("what", nargs="?", default="all",
                    choices=["all", "spaces", "strategies", "datasets"])
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from ..core.options import spec_for
    from ..data import DATASETS
    from ..methods import STRATEGIES, option_help
    from ..registry import first_paragraph
    from ..spaces import SPACES
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
