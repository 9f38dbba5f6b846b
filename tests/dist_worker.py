"""Run under torchrun by tests/test_dist.py: a data-parallel search whose callback checks, after
every epoch, that every rank holds bit-identical architecture parameters and strategy state
(and, with STOP_AFTER set, stops after that epoch as an interruption would)."""
import json
import os
import sys

import torch
import torch.distributed as dist

import archgrad


def main():
    out, strategy, space, stop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    resume = len(sys.argv) > 5 and sys.argv[5] == "resume"
    report = {"equal": [], "world": None}

    def check(record, live):
        arch = live["strategy"].arch
        flat = torch.cat([p.detach().reshape(-1).double() for p in arch.parameters()])
        w = torch.cat([p.detach().reshape(-1).double() for p in live["model"].parameters()])
        both = torch.cat([flat, w])
        got = [torch.zeros_like(both) for _ in range(dist.get_world_size())]
        dist.all_gather(got, both)
        report["equal"].append(all(torch.equal(got[0], g) for g in got))
        report["world"] = dist.get_world_size()
        if record["epoch"] == stop:
            if dist.get_rank() == 0:
                with open(os.path.join(out, "..", "dist_report.json"), "w") as f:
                    json.dump(report, f)
            raise SystemExit(3)

    kw = dict(callbacks=[check])
    if resume:
        res = archgrad.search(resume=out, **kw)
    else:
        opts = dict(C=4, N=1) if space == "nb201" else dict(ninp=8, nhid=8, steps=2)
        data = dict(dataset="digits") if space == "nb201" else \
            dict(dataset="ptb", data_dir=os.environ["PTB_DIR"])
        res = archgrad.search(space=space, strategy=strategy, epochs=3, batch_size=16,
                              device="cpu", out=out, seed=1, **data, **opts, **kw)
    if dist.get_rank() == 0:
        with open(os.path.join(out, "..", "dist_report.json"), "w") as f:
            json.dump(dict(report, genotype=str(res.genotype)), f)


if __name__ == "__main__":
    main()
