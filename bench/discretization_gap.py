#!/usr/bin/env python
"""The discretization gap (SNAS Table 1) for every registered strategy on one small setting: the
supernet's validation accuracy at the end of the search beside that of the derived architecture
evaluated with the shared weights, without retraining. Also the derived cell's NAS-Bench-201
CIFAR-10 accuracy, the final entropy and the search time.

Default: nb201 at C=16, N=5 on digits, 10 epochs, seed 0.

    python bench/discretization_gap.py [--epochs 10] [--strategies ...] [--write]
"""
from __future__ import annotations

import argparse
import time

from _results import write_block


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import archgrad
    names = args.strategies or archgrad.list_strategies()
    lines = ["| strategy | supernet valid acc | derived, shared weights | gap (points) | "
             "NB201 CIFAR-10 | entropy | search s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in names:
        r = archgrad.search(strategy=s, dataset=args.dataset, epochs=args.epochs, seed=args.seed,
                            device="cpu")
        f = r.final
        lines.append(f"| {s} | {f['supernet_valid_acc']:.2f} | {f['derived_valid_acc']:.2f} | "
                     f"{f['discretization_gap']:+.2f} | {f['benchmark']['cifar10']:.2f} | "
                     f"{f['entropy']:.3f} | {f['search_time_s']:.0f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.write:
        body = (f"`python bench/discretization_gap.py --write` ({time.strftime('%Y-%m-%d')}): "
                f"nb201 C=16 N=5 on {args.dataset}, {args.epochs} epochs, seed {args.seed}, each "
                f"strategy's defaults. Supernet = the search network under its expected mix "
                f"(softmax probabilities; NASP: its one-hot projection); derived = the final "
                f"genotype's one-hot mix with the same weights and BN statistics.\n\n{table}")
        write_block("discretization_gap", "Discretization gap per strategy (SNAS Table 1)", body)


if __name__ == "__main__":
    main()
