"""Run under torchrun (2 processes) by tests/test_dist.py: SyncBN on each rank's half of a batch
against one process's batch norm on the whole batch, in float64 (forward, the input's and the
affine parameters' gradients, the running statistics), for batch norms of 2, 3 and 4
dimensions, called directly, through torch's modules and through F.batch_norm."""
import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from archgrad.engine import dist as adist


def main():
    out = sys.argv[1]
    adist.setup("cpu")
    ctx = adist.context()
    rank, world = ctx.rank, ctx.world
    worst = 0.0
    for seed in range(3):
        for shape in [(8, 3, 5, 5), (6, 4), (4, 3, 7)]:
            g = torch.Generator().manual_seed(seed)
            C = shape[1]
            x = torch.randn(*shape, dtype=torch.float64, generator=g)
            gy = torch.randn(*shape, dtype=torch.float64, generator=g)
            w0 = torch.randn(C, dtype=torch.float64, generator=g)
            b0 = torch.randn(C, dtype=torch.float64, generator=g)
            rm0 = torch.randn(C, dtype=torch.float64, generator=g)
            rv0 = torch.rand(C, dtype=torch.float64, generator=g) + 0.5
            part = slice(rank * shape[0] // world, (rank + 1) * shape[0] // world)
            for how in ("function", "module", "functional"):
                # one process, the whole batch
                xf = x.clone().requires_grad_()
                wf, bf = w0.clone().requires_grad_(), b0.clone().requires_grad_()
                rmf, rvf = rm0.clone(), rv0.clone()
                yf = F.batch_norm(xf, rmf, rvf, wf, bf, True, 0.1, 1e-5)
                gxf, gwf, gbf = torch.autograd.grad((yf * gy).sum(), (xf, wf, bf))
                # this rank's half
                xs = x[part].clone().requires_grad_()
                if how == "module":
                    bn = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d,
                          4: torch.nn.BatchNorm2d}[x.dim()](C).double()
                    with torch.no_grad():
                        bn.weight.copy_(w0)
                        bn.bias.copy_(b0)
                        bn.running_mean.copy_(rm0)
                        bn.running_var.copy_(rv0)
                    with ctx.synchronised_batch_norm():
                        ys = bn(xs)
                    ws, bs, rms, rvs = bn.weight, bn.bias, bn.running_mean, bn.running_var
                else:
                    ws, bs = w0.clone().requires_grad_(), b0.clone().requires_grad_()
                    rms, rvs = rm0.clone(), rv0.clone()
                    if how == "function":
                        ys = adist.sync_batch_norm(xs, rms, rvs, ws, bs, 0.1, 1e-5)
                    else:
                        with ctx.synchronised_batch_norm():
                            ys = F.batch_norm(xs, rms, rvs, ws, bs, True, 0.1, 1e-5)
                gxs, gws, gbs = torch.autograd.grad((ys * gy[part]).sum(), (xs, ws, bs))
                gws, gbs = gws.clone(), gbs.clone()
                dist.all_reduce(gws)  # the whole loss's gradient: the sum over the ranks
                dist.all_reduce(gbs)
                for a, b in ((ys, yf[part]), (gxs, gxf[part]), (gws, gwf), (gbs, gbf),
                             (rms, rmf), (rvs, rvf)):
                    worst = max(worst, (a.detach() - b.detach()).abs().max().item())
    # outside the context, or without gradients, each rank keeps its own statistics
    xs = torch.randn(4, 3, dtype=torch.float64) + rank
    with ctx.synchronised_batch_norm(), torch.no_grad():
        local = F.batch_norm(xs, None, None, None, None, True, 0.1, 1e-5)
    own = F.batch_norm(xs, None, None, None, None, True, 0.1, 1e-5)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"worst": worst, "world": world,
                       "no_grad_local": torch.equal(local, own)}, f)
    adist.teardown()


if __name__ == "__main__":
    main()
