"""``archgrad reproduce``: a paper's protocol run as a sweep, reported beside it."""
from __future__ import annotations

import sys

from ..errors import ArchgradError
from .common import _path, _print_json, _seed
from .sweep import _devices, _print_sweep, _sweep_flags


def add(sub) -> None:
    """The ``reproduce`` command's arguments."""
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


def cmd_reproduce(args) -> int:
    from ..protocols import load, names
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
        from ..protocols import source_text
        load(args.protocol)  # checked: what is shown runs
        sys.stdout.write(source_text(args.protocol)[0].decode("utf-8"))
        return 0
    from ..experiments.sweep import reproduce
    from ..runs.rundir import new_run_dir
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
