"""``archgrad draw``: a genotype's cells as PNG and SVG."""
from __future__ import annotations

from .common import _genotype_arg, _path


def add(sub) -> None:
    """The ``draw`` command's arguments."""
    dr = sub.add_parser("draw", help="draw a genotype's cells (PNG and SVG)",
                        description="Draw the cells of a genotype like the DARTS paper's figures.")
    _genotype_arg(dr, "genotype string, a named genotype (DARTS_V2, ...) or a "
                    "search run directory")
    dr.add_argument("--space", default=None, help="space of the genotype (default: the run's, "
                    "else nb201)")
    dr.add_argument("--out", type=_path, default="cell",
                    help="output path without suffix (default: cell)")
    dr.set_defaults(func=cmd_draw)


def cmd_draw(args) -> int:
    from ..engine.train import genotype_source, run_space
    from ..experiments.plot import draw
    from ..spaces import get_space
    space = args.space or run_space(args.genotype)
    g = genotype_source(args.genotype, get_space(space or "nb201").genotype)
    draw(g, args.out, str(args.genotype) if len(str(args.genotype)) < 40 else None)
    print(f"wrote {args.out}.png and {args.out}.svg")
    return 0
