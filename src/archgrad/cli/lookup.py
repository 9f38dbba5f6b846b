"""``archgrad lookup``: a genotype's figures in NAS-Bench-201's table."""
from __future__ import annotations

from ..errors import ArchgradError, GenotypeError
from .common import _genotype_arg, _print_json


def add(sub) -> None:
    """The ``lookup`` command's arguments."""
    lk = sub.add_parser("lookup", help="NAS-Bench-201 figures of a genotype",
                        description="Ground truth from NAS-Bench-201's table (offline): accuracy "
                        "after 200 and 12 epochs, rank and percentile among all 15625 cells.")
    _genotype_arg(lk, "NAS-Bench-201 genotype string or a search run directory")
    lk.add_argument("--dataset", default="cifar10",
                    help="cifar10, cifar10-valid, cifar100 or ImageNet16-120 (default cifar10)")
    lk.add_argument("--json", action="store_true", help="print JSON")
    lk.set_defaults(func=cmd_lookup)


def _nb201_genotype_arg(value: str) -> str:
    """A NAS-Bench-201 genotype from ``value`` (a string or a search run directory of nb201)."""
    from ..engine.train import genotype_source, run_space
    if not isinstance(value, str) or not value.strip():
        raise ArchgradError("lookup needs a NAS-Bench-201 genotype such as "
                            "'|nor_conv_3x3~0|+|...|' or a search run directory; got an empty "
                            "string")
    src = run_space(value)
    if src is not None and src != "nb201":
        raise ArchgradError(f"{value} is a search of the '{src}' space, which has no benchmark "
                            f"table; lookup answers for NAS-Bench-201 (nb201) cells only")
    from ..spaces import get_space
    if src is None:
        text = genotype_source(value)
        try:
            get_space("nb201").genotype(text.strip())
        except GenotypeError:
            from ..engine.train import spaces_of
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
    from .. import lookup
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
