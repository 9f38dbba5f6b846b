"""``archgrad export``: a genotype's network as model.pt and a torch.export program."""
from __future__ import annotations

from pathlib import Path

from .common import _build_space, _genotype_arg, _path, _positive, _space_of
from .info import _check_network_fits, _image_flags_only_for_images


def add(sub) -> None:
    """The ``export`` command's arguments."""
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


def cmd_export(args) -> int:
    """The stand-alone network of a genotype: model.pt (state_dict + genotype) and model.pt2
    (torch.export). Weights from a training run directory, else freshly initialised."""

    from ..engine.train import (
        export_example,
        export_program,
        genotype_source,
        load_model,
        save_model,
    )
    from ..runs.rundir import existing_dir, load_checkpoint
    src = existing_dir(args.genotype)
    if src is not None and (src / "model.pt").is_file():  # a training run: its trained weights
        net = load_model(src / "model.pt")
        ck = load_checkpoint(src / "model.pt")
        from ..spaces import get_space
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
    from ..runs.rundir import check_out_dir
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
