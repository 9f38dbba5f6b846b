"""Static cost of a network: parameters and FLOPs (multiply-accumulates) for one input."""
from __future__ import annotations

import torch
from torch import nn

from ..core.ops import count_parameters


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...], *args) -> int:
    """Multiply-accumulate operations of convolutions and linear layers for one sample of
    ``input_shape`` (C, H, W), counted with forward hooks (grouped convolutions by groups)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=p.device if p is not None else "cpu")
        model(x, *args)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return total


def describe(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Parameters (without an auxiliary head), multiply-accumulates, and the memory access cost
    of SNAS Appendix F summed over the network's convolutions, poolings and skip connections."""
    from ..core.costs import op_cost
    return {"params": count_parameters(model), "flops": count_flops(model, input_shape),
            "mac": int(op_cost(model, tuple(input_shape))[2]), "input_shape": list(input_shape)}
