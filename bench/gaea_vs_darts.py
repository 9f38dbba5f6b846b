#!/usr/bin/env python
"""DARTS versus GAEA DARTS: entropy of the architecture distribution and the NAS-Bench-201 accuracy
of the derived cell, on the same data, seeds and budget (GAEA's argument: exponentiated gradient
drives the architecture weights to sparse solutions).

Default: the NB201 space at its defaults (C=16, N=5) on digits, 10 epochs, seeds 0-2. Writes
bench/gaea_vs_darts.png (entropy per epoch) and, with --write, a table in bench/RESULTS.md.

    python bench/gaea_vs_darts.py [--dataset digits] [--epochs 10] [--seeds 0 1 2] [--write]
"""
from __future__ import annotations

import argparse
import statistics
import time

from _results import HERE, write_block


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="*", default=["darts", "gaea-darts"])
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import archgrad
    runs = {s: [] for s in args.strategies}
    for s in args.strategies:
        for seed in args.seeds:
            t0 = time.perf_counter()
            r = archgrad.search(strategy=s, dataset=args.dataset, epochs=args.epochs, seed=seed,
                                C=args.C, N=args.N, data_dir=args.data_dir, subset=args.subset,
                                device="cpu")
            runs[s].append({"entropy": [h["entropy"] for h in r.history],
                            "nb201": r.final["benchmark"]["cifar10"],
                            "genotype": str(r.genotype),
                            "gap": r.final["discretization_gap"],
                            "time": time.perf_counter() - t0})
            print(f"{s} seed {seed}: entropy {runs[s][-1]['entropy'][-1]:.3f}, "
                  f"NB201 cifar10 {runs[s][-1]['nb201']:.2f}%  {r.genotype}", flush=True)
    plot(runs, args)
    lines = ["| strategy | final entropy (mean) | NB201 CIFAR-10 test acc (mean, per seed) | "
             "discretization gap (points) | derived cells |", "| --- | ---: | --- | ---: | --- |"]
    for s, rs in runs.items():
        lines.append(f"| {s} | {statistics.mean(r['entropy'][-1] for r in rs):.3f} | "
                     f"{statistics.mean(r['nb201'] for r in rs):.2f} "
                     f"({', '.join(format(r['nb201'], '.2f') for r in rs)}) | "
                     f"{statistics.mean(r['gap'] for r in rs):.1f} | "
                     f"{'<br>'.join(r['genotype'].replace('|', chr(92) + '|') for r in rs)} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        body = (f"`python bench/gaea_vs_darts.py --write` ({time.strftime('%Y-%m-%d')}): "
                f"nb201 C={args.C} N={args.N} on {args.dataset}"
                f"{f' (subset {args.subset})' if args.subset else ''}, {args.epochs} epochs, seeds "
                f"{args.seeds}; entropy = mean per-edge entropy (nats, uniform = ln 5 = 1.609). "
                f"Figure: [`gaea_vs_darts.png`](gaea_vs_darts.png).\n\n{table}")
        write_block(f"gaea_vs_darts_{args.dataset}", f"DARTS vs GAEA DARTS ({args.dataset})", body)


def plot(runs, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (s, rs) in enumerate(runs.items()):
        for j, r in enumerate(rs):
            ax.plot(range(1, len(r["entropy"]) + 1), r["entropy"], color=f"C{i}", alpha=0.8,
                    label=s if j == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean edge entropy (nats)")
    ax.set_title(f"architecture entropy on {args.dataset}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / f"gaea_vs_darts{'' if args.dataset == 'digits' else '_' + args.dataset}.png",
                dpi=130)


if __name__ == "__main__":
    main()
