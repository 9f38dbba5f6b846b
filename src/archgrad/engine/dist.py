"""Data-parallel search and training under ``torchrun`` (``torch.distributed``).

Distribution is a property of the run, not of a strategy or a space: the loop sets it up, the
data is sharded, and two reductions keep the ranks together:

* every global batch (``--batch-size``: the batch of all processes together) is cut into
  ``world_size`` equal shards, rank r taking the r-th; every rank walks the same permutation of
  the data (seeded per epoch), so the union of the shards is exactly the one-process batch;
* the weights' gradients and the architecture's gradients are averaged over the ranks (one
  all-reduce each, before clipping and before the update rule), so every rank applies the same
  update to the same parameters and the architecture parameters stay bit-identical;
* sampling strategies draw from one generator seeded the same on every rank: every rank
  computes the same sampled architecture at a step, on its own shard (the averaged estimate is
  that of the whole batch);
* batch norm uses each shard's statistics while training (as DistributedDataParallel does); the
  running statistics of rank 0 are broadcast before every evaluation and checkpoint. With
  ``--sync-bn`` (``Context.synchronised_batch_norm``) the statistics of a training step are those
  of the whole global batch instead (SyncBN), for every batch norm of any space (modules and
  functional ones alike), on CPU (gloo) as on GPUs;
* the epoch's figures are averaged over the ranks; rank 0 alone writes the run directory and
  draws the progress display.

Backends: NCCL for CUDA devices, gloo on CPU. ``world_size`` is recorded in config.json and in
the checkpoint; a resume must use the same number of processes (anything else is refused).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ArchgradError


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    #: where this rank's collectives of Python numbers run (NCCL reduces GPU tensors only)
    device: str = "cpu"

    @property
    def active(self) -> bool:
        """In a process group (under torchrun, one process included)."""
        return self.backend is not None

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops in one process) ---------------------------------------------------
    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def average_(self, tensors: list[Tensor]) -> None:
        """Average tensors over the ranks in place (one flat all-reduce)."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat)
        flat.div_(self.world)
        i = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[i:i + n].view_as(t))
            i += n

    def average_grads(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        """An architecture gradient (label -> tensor), averaged over the ranks."""
        if not self.active or not grads:
            return grads
        out = {k: v.detach().clone() for k, v in grads.items()}
        keys = sorted(out)
        self.average_([out[k] for k in keys])
        return out

    def average_floats(self, values: dict[str, float]) -> dict[str, float]:
        """An epoch's figures averaged over the ranks (the same keys on every rank)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                         device=self.device)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def any_true(self, flag: bool) -> bool:
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (batch norm's running statistics) on every rank."""
        if not self.active:
            return
        for b in module.buffers():
            if b.is_floating_point() or b.dtype in (torch.int64, torch.int32):
                torch.distributed.broadcast(b, 0)

    def gather_objects(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    def synchronised_batch_norm(self, on: bool = True):
        """A context in which training-mode batch norms that compute gradients normalise with
        the statistics of all ranks' shards together (SyncBN); a no-op in one process."""
        return _SyncBatchNorm() if on and self.active else nullcontext()


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                    weight: Tensor | None, bias: Tensor | None, momentum: float,
                    eps: float) -> Tensor:
    """Training-mode batch norm over the union of every rank's batch (Ioffe & Szegedy 2015,
    Alg. 1, with the mean and the biased variance of the global batch): two differentiable
    all-reduces (the sums, then the squared deviations from the global mean, which is
    numerically as stable as one process's two-pass variance). Backward, the all-reduce sums
    the gradients of the statistics over the ranks, so once the parameters' gradients are
    averaged every rank holds the one-process gradient of the global batch. The running
    statistics take the unbiased variance, as torch's batch norm does."""
    C = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = [1, C] + [1] * (x.dim() - 2)
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # fp32 under amp
    sums = all_reduce(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // C])]))
    n = sums[-1]
    mean = sums[:-1] / n
    xc = xf - mean.view(shape)
    var = all_reduce(xc.pow(2).sum(dims)) / n
    y = xc * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        y = y * weight.to(y.dtype).view(shape)
    if bias is not None:
        y = y + bias.to(y.dtype).view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            m = float(momentum)
            running_mean.mul_(1 - m).add_(mean.detach().to(running_mean.dtype), alpha=m)
            unbiased = var.detach() * (n / (n - 1).clamp_min(1))
            running_var.mul_(1 - m).add_(unbiased.to(running_var.dtype), alpha=m)
    return y.to(x.dtype)


class _AllReduce(torch.autograd.Function):
    """A sum over the ranks whose backward is the sum of the gradients over the ranks."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.clone()
        torch.distributed.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


def all_reduce(t: Tensor) -> Tensor:
    """Differentiable all-reduce (sum)."""
    return _AllReduce.apply(t)


class _SyncBatchNorm:
    """Within the block, ``torch.nn.functional.batch_norm`` (which torch's BatchNorm modules and
    the fused ops call) runs ``sync_batch_norm`` in training mode with gradients enabled.
    Evaluation, BN recalibration and other no-grad passes keep each rank's own statistics (they
    issue no collectives, so ranks need not make them in step). The function is swapped for the
    block rather than intercepted with a torch function mode, which would run Python for every
    other op of the step too (no cost measured on CPU, where the collectives dominate; on a GPU
    a kernel launch costs microseconds). Not thread-safe: one search per process."""

    def __enter__(self):
        self._orig = orig = F.batch_norm

        def batch_norm(input, running_mean, running_var, weight=None, bias=None,
                       training=False, momentum=0.1, eps=1e-5):
            if training and torch.is_grad_enabled():
                return sync_batch_norm(input, running_mean, running_var, weight, bias,
                                       momentum, eps)
            return orig(input, running_mean, running_var, weight, bias, training, momentum,
                        eps)
        F.batch_norm = batch_norm
        return self

    def __exit__(self, *exc):
        F.batch_norm = self._orig
        return False


_CTX = Context()


def context() -> Context:
    """This process's place in the run (rank 0 of 1 outside torchrun)."""
    return _CTX


def launched() -> bool:
    """Started by torchrun (its environment variables are set), one process included: a
    one-process run joins a process group of one (NCCL on a GPU), the path several take."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def setup(device: str | None) -> Context:
    """Join the process group torchrun describes (once); check the set-up. ``device``: the
    run's device (auto, cpu, cuda): NCCL and one GPU per local rank on CUDA, gloo on CPU."""
    global _CTX
    if not launched():
        return _CTX
    if _CTX.active:
        return _CTX
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    want = (device or "auto").split(":")[0]
    if want == "cuda" and not torch.cuda.is_available():
        raise ArchgradError("--device cuda under torchrun, but this machine has no CUDA GPU; "
                            "use --device cpu (gloo)")
    use_cuda = want == "cuda" or (want == "auto" and torch.cuda.is_available())
    if use_cuda:
        n = torch.cuda.device_count()
        if n < local_world:
            raise ArchgradError(f"torchrun starts {local_world} processes on this machine but "
                                f"it has {n} GPU{'s' if n != 1 else ''}; use "
                                f"--nproc_per_node={n} (one process per GPU)")
        torch.cuda.set_device(local)
    backend = "nccl" if use_cuda else "gloo"
    if not torch.distributed.is_available():
        raise ArchgradError("this PyTorch build has no torch.distributed")
    torch.distributed.init_process_group(backend)
    _CTX = Context(rank, world, local, backend, f"cuda:{local}" if use_cuda else "cpu")
    return _CTX


def run_device(device: str | None) -> str:
    """The device of this rank: its own GPU under torchrun with CUDA."""
    ctx = context()
    if ctx.active and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device or "auto"


def check_batch(batch_size: int, what: str = "--batch-size") -> None:
    ctx = context()
    if ctx.active and batch_size % ctx.world:
        raise ArchgradError(f"{what} {batch_size} is the batch of all {ctx.world} processes "
                            f"together and must be divisible by their number; use a multiple "
                            f"of {ctx.world}")


def teardown() -> None:
    global _CTX
    if _CTX.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CTX = Context()


__all__ = ["Context", "sync_batch_norm", "all_reduce", "context", "setup", "launched",
           "run_device", "check_batch", "teardown"]
