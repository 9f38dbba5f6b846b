#!/usr/bin/env python
"""Search-step time and peak memory of every registered strategy on the NB201 supernet.

Fixed small configuration on CPU (the one the NNI peer in ../shared/peers uses): C=16, N=1,
batch 64, random 32x32 inputs, 10 classes, 2 threads. One step = what the strategy does per
iteration (architecture step + weight step for bi-level methods). Each strategy runs in its own
process so that its peak RSS is its own. Prints a table; --write updates bench/RESULTS.md.

    python bench/step_time.py [--steps 20] [--warmup 3] [--C 16] [--N 1] [--batch 64] [--write]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(strategy: str, space: str, C: int, N: int, batch: int, steps: int, warmup: int,
            threads: int, size: int, options: dict) -> dict:
    import resource

    import torch

    from archgrad.methods import make_strategy
    from archgrad.spaces import get_space

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sp = get_space(space, C=C, N=N, num_classes=10, in_channels=3, **options)
    model = sp.supernet()
    st = make_strategy(strategy)
    st.setup(sp.choices(), model, seed=0)
    g = torch.Generator().manual_seed(0)
    n = steps + warmup
    batches = [(torch.randn(batch, 3, size, size, generator=g),
                torch.randint(0, 10, (batch,), generator=g)) for _ in range(2 * n)]
    rss0 = _rss_mb()
    times = []
    epochs = 10
    for i in range(n):
        st.set_lr(st.warmup_epochs, epochs)
        t0 = time.perf_counter()
        st.step(batches[2 * i], batches[2 * i + 1], loss_fn=sp.loss, epoch=st.warmup_epochs,
                epochs=epochs, step=i, steps_per_epoch=n)
        times.append(time.perf_counter() - t0)
    timed = times[warmup:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"strategy": strategy, "space": space, "C": C, "N": N, "batch": batch,
            "threads": torch.get_num_threads(), "steps": len(timed),
            "step_median_s": statistics.median(timed), "step_min_s": min(timed),
            "peak_rss_mb": round(peak, 1), "rss_before_steps_mb": round(rss0, 1),
            "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", nargs="*", default=None)
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one strategy, print JSON
    args = ap.parse_args()
    if args.one:
        res = measure(args.one, args.space, args.C, args.N, args.batch, args.steps, args.warmup,
                      args.threads, args.size, {})
        print("JSON " + json.dumps(res))
        return
    from archgrad.methods import STRATEGIES
    names = args.strategies or STRATEGIES.names()
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--space", args.space, "--C", str(args.C),
               "--N", str(args.N), "--batch", str(args.batch), "--size", str(args.size),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.split("JSON ", 1)[1])
        rows.append(row)
        print(f"{name:<20} {row['step_median_s']:.4f} s/step (min {row['step_min_s']:.4f})  "
              f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    if args.write:
        write_results(rows, args)


def write_results(rows, args):
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- step_time:start -->", "<!-- step_time:end -->"
    table = [start,
             f"Search step on the `{args.space}` supernet, C={args.C}, N={args.N}, batch "
             f"{args.batch}, {args.size}x{args.size} random inputs, {args.threads} threads, "
             f"CPU ({platform.processor() or platform.machine()}), torch {rows[0]['torch']}; "
             f"median of {args.steps} steps after {args.warmup} warm-up. "
             f"Measured {time.strftime('%Y-%m-%d')} by `python bench/step_time.py --write`.",
             "", "| strategy | s/step (median) | s/step (min) | peak RSS (MB) |",
             "| --- | ---: | ---: | ---: |"]
    for r in rows:
        table.append(f"| {r['strategy']} | {r['step_median_s']:.4f} | {r['step_min_s']:.4f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    table.append(end)
    block = "\n".join(table)
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n## Step time and memory per strategy\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
