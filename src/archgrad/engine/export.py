"""A trained network leaving archgrad: ``model.pt`` (its state_dict with the genotype and the
space's options, ``load_model``) and ``model.pt2`` (a ``torch.export`` program that loads with
PyTorch alone; a language model's program takes one time step)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ArchgradError
from ..runs.rundir import (
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
)
from ..spaces import get_space


# ---- export -----------------------------------------------------------------------------------
def save_model(model: nn.Module, space, genotype: str, path: Path) -> None:
    """The state_dict with what rebuilds its network: ``archgrad.load_model(path)``."""
    save_checkpoint(path, {"format": "archgrad-model-1", "space": space.name,
                           "genotype": str(genotype), "space_options": dict(space.config),
                           "state_dict": model.state_dict()})


class LanguageModelStep(nn.Module):
    """A language model as a function of plain tensors, for ``torch.export``: ``(tokens (T, B),
    state (B, H)) -> (log-probabilities (T, B, V), state (B, H))``; the state of one call is
    handed to the next."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, state: torch.Tensor):
        from ..data.text import Window
        window = Window(tokens, state)
        return self.lm(window).log_probs, window.box.value


def export_program(model: nn.Module, example, path: Path) -> None:
    """A stand-alone program of ``model`` in eval mode (``torch.export``; loads with PyTorch
    alone: ``torch.export.load(path).module()``); the batch size is dynamic. ``example``: an
    input batch, or for a language model a ``(tokens, state)`` pair of one time step (its
    program reads one token per sequence and the carried state: call it once per step)."""
    import io
    was = model.training
    model.eval()
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        if isinstance(example, tuple):  # a language model: one time step, batch dynamic
            prog, args, dyn = LanguageModelStep(model).eval(), example, ({1: batch}, {0: batch})
        else:
            prog, args, dyn = model, (example,), ({0: batch},)
        try:
            ep = torch.export.export(prog, args, dynamic_shapes=dyn)
        except Exception:  # a network whose graph specialises on the batch: export it fixed
            ep = torch.export.export(prog, args)
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        atomic_write_bytes(path, buf.getvalue())
    finally:
        model.train(was)


def export_example(model: nn.Module, space, image_size: int | None = None):
    """The example input ``export_program`` traces ``model`` with: two inputs of the space's
    shape (``SearchSpace.input_shape``), or one time step of two token sequences and the
    model's zero state."""
    if space.modality == "sequence":
        from .lmtrain import step_example
        return step_example(model)
    return torch.randn(2, *space.input_shape(image_size))


def load_model(path: str | Path) -> nn.Module:
    """The network saved in ``model.pt`` (by ``train`` or ``archgrad export``), weights loaded."""
    path = Path(path)
    ck = load_checkpoint(path, required=("format", "space", "genotype", "state_dict"))
    if ck.get("format") != "archgrad-model-1":
        raise ArchgradError(f"{path} is not an archgrad model file")
    net = get_space(ck["space"], **ck.get("space_options", {})).build(ck["genotype"])
    try:
        net.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise ArchgradError(f"{path} does not fit its genotype's network "
                            f"({str(e).splitlines()[0][:160]})") from None
    return net
