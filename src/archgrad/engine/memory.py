"""How much memory a network will need, estimated before it is built.

The network is constructed on PyTorch's ``meta`` device (shapes only, nothing allocated) and one
forward pass runs there with a batch of the real shape: the parameters' bytes are counted and the
bytes autograd would save for backward are summed. A search or training run that cannot fit in
the memory available is refused in one line instead of failing after allocating tens of GB.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ArchgradError

GB = 2 ** 30


@dataclass
class Estimate:
    params: int  # bytes of the parameters
    activations: int  # bytes autograd saves for backward in one forward pass (0: no backward)
    output: int = 0

    def training_bytes(self, optimizer_copies: int = 2) -> int:
        """Parameters, their gradients and optimizer state (``optimizer_copies`` of them:
        SGD momentum 1, Adam 2), saved activations and about as much again in transients."""
        return self.params * (2 + optimizer_copies) + 2 * self.activations

    def inference_bytes(self) -> int:
        """Parameters and about three of the largest tensors alive at once."""
        return self.params + 3 * self.output


def estimate(build: Callable[[], nn.Module], run: Callable[[nn.Module], Tensor],
             backward: bool = True) -> Estimate:
    """Build the module with ``build()`` on the meta device and run ``run(module)`` there (make
    its inputs with ``device='meta'``)."""
    with torch.device("meta"):
        model = build()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    params += sum(b.numel() * b.element_size() for b in model.buffers())
    saved = 0
    largest = 0  # the largest tensor a module produces (inference keeps a few alive at once)

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    def hook(module, inputs, output):
        nonlocal largest
        for t in list(inputs) + list(output if isinstance(output, (tuple, list))
                                     else (output,)):
            if isinstance(t, Tensor):
                largest = max(largest, t.numel() * t.element_size())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.set_grad_enabled(backward), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = run(model)
    finally:
        for h in handles:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    out_bytes = sum(o.numel() * o.element_size() for o in outs if isinstance(o, Tensor))
    return Estimate(params, saved if backward else 0, max(out_bytes, largest))


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for a new run on ``device`` (None: unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(dev)
            return int(free)
        except Exception:
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(need: int, device, what: str, hint: str) -> None:
    """Refuse ``what`` in one line when ``need`` bytes exceed the memory available."""
    have = available_bytes(device)
    if have is not None and need > have:
        raise ArchgradError(f"{what} needs about {need / GB:.1f} GB, more than the "
                            f"{have / GB:.1f} GB available on {torch.device(device).type}; "
                            f"{hint}")


def guarded(build: Callable[[], nn.Module], run: Callable[[nn.Module], Tensor], device,
            what: str, hint: str, backward: bool = True, optimizer_copies: int = 2) -> Estimate:
    """Estimate, refuse what cannot fit, and turn a configuration that cannot run at all (an
    input too small for the network's downsampling, ...) into a one-line error."""
    try:
        est = estimate(build, run, backward)
    except ArchgradError:
        raise
    except (RuntimeError, ValueError, IndexError) as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if "more than 1 value per channel" in msg:   # batch norm in training mode on one row
            hint = "batch norm needs a batch of at least 2; use a larger --batch-size"
        raise ArchgradError(f"{what} cannot run with this configuration ({msg}); {hint}") \
            from None
    need = est.training_bytes(optimizer_copies) if backward else est.inference_bytes()
    check_fits(need, device, what, hint)
    return est


__all__ = ["Estimate", "estimate", "available_bytes", "check_fits", "guarded"]
