#!/usr/bin/env python
"""Memory of one search step: DARTS versus PC-DARTS (partial channels, K=4) at the same batch
size, on the NB201 supernet (C=16, N=5, 32x32 inputs). Reports the peak RSS the steps add and the
bytes autograd saves for backward in one step (activation memory), each in a fresh process.

    python bench/pcdarts_memory.py [--batches 64 256] [--write]
"""
from __future__ import annotations

import argparse
import time

from _results import write_block
from step_time import measure_in_subprocess


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="*", default=[64, 256])
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    lines = ["| batch | strategy | s/step | peak RSS added (MB) | saved activations (MB) |",
             "| ---: | --- | ---: | ---: | ---: |"]
    for b in args.batches:
        for s, opts in (("darts", {}), ("pcdarts", {"partial_channels": 4})):
            m = measure_in_subprocess(s, "nb201", 16, args.N, b, 32, args.steps, 1, 2, opts)
            lines.append(f"| {b} | {s} | {m['step_median_s']:.3f} | {m['step_memory_mb']:.0f} | "
                         f"{m['saved_activations_mb']:.0f} |")
            print(lines[-1], flush=True)
    if args.write:
        body = (f"`python bench/pcdarts_memory.py --write` ({time.strftime('%Y-%m-%d')}): nb201 "
                f"supernet C=16, N={args.N}, 32x32 random inputs, CPU, 2 threads, median of "
                f"{args.steps} steps; one step = architecture step + weight step.\n\n"
                + "\n".join(lines))
        write_block("pcdarts_memory", "DARTS vs PC-DARTS memory", body)


if __name__ == "__main__":
    main()
