#!/usr/bin/env python
"""Data-parallel search on CPU: step time with 1 and 2 gloo processes (one thread each) on a
fixed configuration, and the scaling efficiency.

The same search (``--batch-size`` is the batch of all processes together) runs under
``torchrun --nproc_per_node=K`` for each K; the step time is the mean over the epochs after the
first of (epoch time / steps) from metrics.jsonl. Efficiency = t(1) / (K * t(K)) in throughput
terms: 1.0 means K processes are K times as fast.

    python bench/dist_scaling.py [--procs 1 2] [--epochs 3] [--batch 64] [--dataset cifar10
        --data-dir DIR --subset 5000] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(k: int, args, sync_bn: bool = False) -> dict:
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={k}", "-m", "archgrad", "search", "--space", args.space,
           "--strategy", args.strategy, "--dataset", args.dataset, "--epochs", str(args.epochs),
           "--channels", str(args.channels), "--cells", str(args.cells), "--batch-size",
           str(args.batch), "--device", "cpu", "--eval-every", "0", "--out", str(out),
           "--quiet"] + (["--sync-bn"] if sync_bn else [])
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    env = dict(os.environ, OMP_NUM_THREADS="1", ARCHGRAD_THREADS="1")
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    per = [r["time_s"] / r["steps"] for r in recs[1:]]  # the first epoch warms up
    return {"procs": k, "step_s": sum(per) / len(per), "steps": recs[0]["steps"],
            "sync_bn": sync_bn}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--strategy", default="darts")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--sync-bn", action="store_true",
                    help="also measure every K > 1 with --sync-bn (SyncBN)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = [run(k, args) for k in args.procs]
    if args.sync_bn:
        rows += [run(k, args, sync_bn=True) for k in args.procs if k > 1]
    base = rows[0]["step_s"] * rows[0]["procs"]
    for r in rows:
        r["efficiency"] = base / (r["procs"] * r["step_s"])
        print(f"{r['procs']} process(es){' SyncBN' if r['sync_bn'] else ''}: "
              f"{r['step_s']:.4f} s/step ({r['steps']} steps/epoch), "
              f"efficiency {r['efficiency']:.2f}", flush=True)
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        import torch
        from _results import write_block
        lines = [f"`{args.strategy}` on `{args.space}` C={args.channels}, N={args.cells}, "
                 f"{args.dataset}" + (f" (subset {args.subset})" if args.subset else "")
                 + f", batch {args.batch} in all (split over the processes), gloo, "
                 f"one thread per process, CPU ({platform.processor() or platform.machine()}, "
                 f"{os.cpu_count()} cores), torch {torch.__version__}; mean step time over "
                 f"epochs 2..{args.epochs}. Measured {time.strftime('%Y-%m-%d')} by "
                 f"`python bench/dist_scaling.py --write`.", "",
                 "| processes | s/step | throughput vs 1 process | efficiency |",
                 "| ---: | ---: | ---: | ---: |"]
        for r in rows:
            lines.append(f"| {r['procs']}{' (SyncBN)' if r['sync_bn'] else ''} | "
                         f"{r['step_s']:.4f} | "
                         f"{rows[0]['step_s'] / r['step_s']:.2f}x | {r['efficiency']:.2f} |")
        write_block("dist_scaling", "Data-parallel search on CPU (torchrun, gloo)",
                    "\n".join(lines))


if __name__ == "__main__":
    main()
