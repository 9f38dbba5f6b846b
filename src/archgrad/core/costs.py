"""Resource costs of candidate operations, SNAS Appendix F.

For a convolution with output H x W, filter f x k, I input and O output channels and g groups:
parameters f k I O / g (eq. 35), FLOPs H W f k I O / g (eq. 36), memory access cost
H W (I + O) + f k I O / g (eq. 37). Pooling: FLOPs H W f k I O (eq. 38), MAC H W (I + O) (eq. 40);
skip connection: FLOPs 0 (eq. 39), MAC H W (I + O); the zero op costs nothing. Batch norms and
activations are not counted, as in the paper.
"""
from __future__ import annotations

import torch
from torch import nn

CRITERIA = ("params", "flops", "mac")


@torch.no_grad()
def op_cost(op: nn.Module, input_shape: tuple[int, int, int]) -> tuple[float, float, float]:
    """(parameters, FLOPs, MAC) of ``op`` applied to one input of shape (C, H, W)."""
    if getattr(op, "is_zero", False):
        return (0.0, 0.0, 0.0)
    totals = [0.0, 0.0, 0.0]

    def conv_hook(m: nn.Conv2d, inp, out):
        f, k = m.kernel_size
        I, O, g = m.in_channels, m.out_channels, m.groups
        H, W = out.shape[-2:]
        w = f * k * I * O / g
        totals[0] += w
        totals[1] += H * W * w
        totals[2] += H * W * (I + O) + w

    def pool_hook(m, inp, out):
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        I, O = inp[0].shape[1], out.shape[1]
        H, W = out.shape[-2:]
        totals[1] += H * W * k[0] * k[1] * I * O
        totals[2] += H * W * (I + O)

    def skip_hook(m, inp, out):
        H, W = out.shape[-2:]
        totals[2] += H * W * (inp[0].shape[1] + out.shape[1])

    hooks = []
    for m in op.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            hooks.append(m.register_forward_hook(pool_hook))
        elif isinstance(m, nn.Identity):
            hooks.append(m.register_forward_hook(skip_hook))
    was = op.training
    op.eval()
    try:
        op(torch.zeros(1, *input_shape))
    finally:
        op.train(was)
        for h in hooks:
            h.remove()
    return tuple(totals)


def normalized(costs: torch.Tensor) -> torch.Tensor:
    """Each criterion divided by its largest value over all candidates and edges of a group,
    so the three criteria are on a common [0, 1] scale before they are combined."""
    scale = costs.flatten(0, 1).amax(0).clamp_min(1e-12)
    return costs / scale
