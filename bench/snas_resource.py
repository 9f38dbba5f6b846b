#!/usr/bin/env python
"""SNAS's resource constraint: raising its weight yields smaller derived cells.

SNAS (single level, Gumbel-softmax) on the DARTS space with SNAS's own child-graph derivation
(the argmax of every edge, 'none' edges dropped), on digits, at resource weights none / mild /
moderate / aggressive (eta of eq. 9 on the per-edge cost, each criterion normalised, averaged over
parameters, FLOPs and MAC). Reports the derived cells' edges and parametric ops, and the
evaluation network's parameters, FLOPs and MAC (C=16, 8 cells, 32x32x3 input).

    python bench/snas_resource.py [--epochs 10] [--seed 0] [--write]
"""
from __future__ import annotations

import argparse
import time

from _results import write_block

LEVELS = ["none", "mild", "moderate", "aggressive"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import archgrad
    from archgrad.core.strategy import Strategy  # noqa: F401
    from archgrad.engine.profile import describe
    lines = ["| resource weight | edges kept (normal / reduce) | parametric ops | eval net params |"
             " FLOPs (M) | MAC (M) | supernet valid acc |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    from archgrad.methods.snas import RESOURCE_LEVELS
    for level in LEVELS:
        r = archgrad.search(space="darts", strategy="snas", dataset="digits", epochs=args.epochs,
                            seed=args.seed, C=args.C, layers=args.layers, rule="snas",
                            resource_weight=level, device="cpu")
        g = r.genotype
        net = archgrad.build("darts", g, eval_C=16, eval_layers=8, auxiliary=False)
        d = describe(net, (3, 32, 32))
        parametric = sum(1 for o, _ in g.normal + g.reduce
                         if o not in ("skip_connect", "max_pool_3x3", "avg_pool_3x3"))
        lines.append(f"| {level} ({RESOURCE_LEVELS[level]}) | {len(g.normal)} / {len(g.reduce)} | "
                     f"{parametric} | {d['params']:,} | {d['flops'] / 1e6:.1f} | "
                     f"{d['mac'] / 1e6:.2f} | {r.final['supernet_valid_acc']:.1f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.write:
        body = (f"`python bench/snas_resource.py --write` ({time.strftime('%Y-%m-%d')}): snas on "
                f"the darts space (C={args.C}, {args.layers} cells, rule=snas) on digits, "
                f"{args.epochs} epochs, seed {args.seed}; the derived genotype's evaluation "
                f"network at C=16, 8 cells, 32x32x3.\n\n{table}")
        write_block("snas_resource", "SNAS resource constraint (DARTS space)", body)


if __name__ == "__main__":
    main()
