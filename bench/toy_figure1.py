#!/usr/bin/env python
"""AdvantageNAS Figure 1: the toy teacher-student task, every method, 10 trials.

Each trial draws its own teacher (architecture a* and shared weights w*) from its seed; every
method is run on the same 10 teachers with the paper's settings: theta by Adam (lr 0.001,
betas (0.9, 0.999), no weight decay), batches of 100 fresh inputs, 2000 iterations. The test loss
of the argmax architecture (zero iff a* is recovered) is recorded every 10 iterations on a fixed
test batch of 1000 inputs. Writes bench/toy_figure1.png (median and 25-75th percentile of the
test loss against iterations) and a table of the iterations until a* is recovered into
bench/RESULTS.md (with --write).

    python bench/toy_figure1.py [--trials 10] [--iterations 2000] [--procs 2] [--write]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ["darts", "snas", "nasp", "reinforce", "parsec", "proxyless", "gdas", "advantage"]
LABELS = {"darts": "DARTS", "snas": "SNAS", "nasp": "NASP", "reinforce": "REINFORCE",
          "parsec": "PARSEC", "proxyless": "ProxylessNAS", "gdas": "GDAS",
          "advantage": "AdvantageNAS"}
EVERY = 10


def run_one(args):
    method, seed, iterations = args
    import torch
    torch.set_num_threads(1)
    import archgrad
    t0 = time.perf_counter()
    # the toy space's defaults are the paper's: Adam lr 1e-3, betas (0.9, 0.999), no decay,
    # an architecture step every iteration
    res = archgrad.search(space="toy", strategy=method, epochs=iterations // EVERY, seed=seed,
                          device="cpu", eval_every=0, steps_per_epoch=EVERY)
    losses = [r["derived_loss"] for r in res.history]
    return {"method": method, "seed": seed, "losses": losses,
            "time_s": time.perf_counter() - t0}


def recovered_at(losses):
    """First iteration from which the argmax architecture is a* (test loss 0) for good."""
    for i in range(len(losses)):
        if all(v == 0.0 for v in losses[i:]):
            return (i + 1) * EVERY
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--methods", nargs="*", default=METHODS)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    jobs = [(m, s, args.iterations) for m in args.methods for s in range(args.trials)]
    with ProcessPoolExecutor(args.procs) as ex:
        results = list(ex.map(run_one, jobs))
    (HERE / "toy_figure1.json").write_text(json.dumps(results))
    table = summarize(results, args)
    print(table)
    plot(results, args)
    if args.write:
        write(table, args)


def summarize(results, args):
    import numpy as np
    lines = ["| method | trials recovering a* | iterations to recover (median) | "
             "final test loss (median) | s / run |", "| --- | ---: | ---: | ---: | ---: |"]
    for m in args.methods:
        rs = [r for r in results if r["method"] == m]
        its = [recovered_at(r["losses"]) for r in rs]
        ok = [i for i in its if i is not None]
        # the median over all trials, counting a failure as "more than the budget"
        med = np.median([i if i is not None else np.inf for i in its])
        med_s = f"{med:.0f}" if np.isfinite(med) else f"> {args.iterations}"
        lines.append(f"| {LABELS[m]} | {len(ok)}/{len(rs)} | {med_s} | "
                     f"{statistics.median(r['losses'][-1] for r in rs):.2e} | "
                     f"{statistics.mean(r['time_s'] for r in rs):.1f} |")
    return "\n".join(lines)


def plot(results, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    top = 0.0
    for m in args.methods:
        L = np.array([r["losses"] for r in results if r["method"] == m])
        x = (np.arange(L.shape[1]) + 1) * EVERY
        lo, med, hi = np.percentile(L, [25, 50, 75], axis=0)
        top = max(top, float(np.percentile(hi, 98)))
        for ax in axes:
            line, = ax.plot(x, med, label=LABELS[m], linewidth=1.2)
            ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
    for ax, xmax, title in ((axes[0], args.iterations, "all iterations"),
                            (axes[1], min(600, args.iterations), "first 600 (the paper's view)")):
        ax.set_xlabel("iteration")
        ax.set_xlim(0, xmax)
        ax.set_ylim(0, top * 1.05)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("test loss of the argmax architecture")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"toy teacher-student task: median and 25-75% over {args.trials} trials",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "toy_figure1.png", dpi=130)
    print(f"wrote {HERE / 'toy_figure1.png'}")


def write(table, args):
    from _results import write_block
    body = (f"AdvantageNAS Figure 1 reproduced (`python bench/toy_figure1.py --write`, "
            f"{time.strftime('%Y-%m-%d')}): {args.trials} trials x {args.iterations} iterations, "
            f"Adam lr 1e-3, betas (0.9, 0.999); test loss of the argmax architecture every "
            f"{EVERY} iterations. Recovery = the iteration from which the loss stays 0. "
            f"Figure: [`toy_figure1.png`](toy_figure1.png).\n\n{table}")
    write_block("toy_figure1", "Toy teacher-student task (AdvantageNAS Figure 1)", body)


if __name__ == "__main__":
    main()
