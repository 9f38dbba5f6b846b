"""``archgrad info``: parameters and multiply-adds of a genotype's network."""
from __future__ import annotations

from ..errors import ArchgradError
from .common import _build_space, _genotype_arg, _positive, _print_json, _space_of


def add(sub) -> None:
    """The ``info`` command's arguments."""
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


def cmd_info(args) -> int:

    from ..engine.profile import describe
    from ..engine.train import genotype_source
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

    from ..engine.memory import guarded
    if sp.modality == "sequence":
        from ..data.text import StateBox, Window

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

    from ..core.ops import count_parameters
    from ..data.text import StateBox, Window
    net = sp.build(g).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(Window(torch.zeros(1, 1, dtype=torch.long), None, StateBox()))
    info = {"space": space_name, "genotype": str(g), "params": count_parameters(net),
            "macs_per_token": int(fc.get_total_flops() // 2),
            "vocab_size": sp.config.get("vocab_size")}
    return _show_info(args, info, [
        f"multiply-accumulates per token (cell and decoder, {info['vocab_size']:,} words): "
        f"{info['macs_per_token'] / 1e6:.2f} M"])
