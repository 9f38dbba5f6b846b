#!/usr/bin/env python
"""Sparse versus dense propagation: step time and memory with the full candidate set and about
half of it, on the NB201 supernet and on the toy space.

NB201: C=16, N=1, batch 64, 32x32 inputs, candidates all five versus the benchmark code's
CONNECT-NAS subset (none, skip_connect, nor_conv_3x3). Toy: 10 versus 5 candidate convolutions
per edge, batch 100. Each measurement runs in a fresh process; "memory" is the peak RSS the steps
add to what the process held before them. Sparse methods (one candidate per edge) should not grow
with the number of candidates; dense ones (DARTS) should.

    python bench/sparse_memory.py [--steps 8] [--write]
"""
from __future__ import annotations

import argparse
import time

from step_time import measure_in_subprocess

SETTINGS = {
    "nb201": dict(C=16, N=1, batch=64, size=32, full={}, half={"ops": ["none", "skip_connect",
                                                                     "nor_conv_3x3"]}),
    "toy": dict(C=None, N=None, batch=100, size=13, full={}, half={"candidates": 5}),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--spaces", nargs="*", default=list(SETTINGS))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from archgrad.methods import STRATEGIES, make_strategy
    names = args.strategies or STRATEGIES.names()
    rows = []
    for space in args.spaces:
        cfg = SETTINGS[space]
        for name in names:
            r = {}
            for which in ("full", "half"):
                m = measure_in_subprocess(name, space, cfg["C"], cfg["N"], cfg["batch"],
                                          cfg["size"], args.steps, args.warmup, 2, cfg[which])
                r[which] = m
            dense = make_strategy(name).estimator.dense
            rows.append((space, name, dense, r))
            f, h = r["full"], r["half"]
            print(f"{space:<6} {name:<14} {'dense ' if dense else 'sparse'} "
                  f"candidates {f['candidates']:>2}: {f['step_median_s']:.4f} s, "
                  f"+{f['step_memory_mb']:.0f} MB RSS, {f['saved_activations_mb']:.2f} MB saved | "
                  f"{h['candidates']:>2}: {h['step_median_s']:.4f} s, "
                  f"+{h['step_memory_mb']:.0f} MB RSS, {h['saved_activations_mb']:.2f} MB saved",
                  flush=True)
    if args.write:
        write(rows, args)


def write(rows, args):
    from _results import write_block
    lines = [f"`python bench/sparse_memory.py --write` ({time.strftime('%Y-%m-%d')}, CPU, "
             f"2 threads, median of {args.steps} steps). RSS = peak RSS the search steps add to "
             f"the process; saved = bytes of the tensors autograd saves for backward in one step "
             f"(activation memory, allocator-independent). NB201: C=16, N=1, batch 64, 32x32, "
             f"5 candidates vs the CONNECT-NAS 3 (none, skip, conv3x3). Toy: 10 vs 5 candidates, "
             f"batch 100.", "",
             "| space | strategy | propagation | s/step all / half | RSS MB all / half | "
             "saved MB all / half |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for space, name, dense, r in rows:
        f, h = r["full"], r["half"]
        lines.append(f"| {space} | {name} | {'dense' if dense else 'sparse'} | "
                     f"{f['step_median_s']:.4f} / {h['step_median_s']:.4f} | "
                     f"{f['step_memory_mb']:.0f} / {h['step_memory_mb']:.0f} | "
                     f"{f['saved_activations_mb']:.3f} / {h['saved_activations_mb']:.3f} |")
    write_block("sparse_memory", "Sparse vs dense propagation", "\n".join(lines))


if __name__ == "__main__":
    main()
