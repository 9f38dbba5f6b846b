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


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(strategy: str, space: str, C: int | None, N: int | None, batch: int, steps: int,
            warmup: int, threads: int, size: int, options: dict,
            strategy_options: dict | None = None, flops: bool = False) -> dict:
    import resource

    import torch

    from archgrad.methods import make_strategy
    from archgrad.spaces import SPACES, get_space

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    accepted = SPACES.get(space).options
    opts = {k: v for k, v in dict(C=C, N=N, num_classes=10, in_channels=3).items()
            if k in accepted and v is not None}
    opts.update(options)
    sp = get_space(space, **opts)
    model = sp.supernet()
    st = make_strategy(strategy, **(strategy_options or {}))
    st.setup(sp.choices(), model, seed=0, costs=sp.op_costs() if st.needs_costs else None)
    g = torch.Generator().manual_seed(0)
    n = steps + warmup
    batches = [sp.example_batch(batch, g, size) for _ in range(2 * n)]
    rss0 = _rss_mb()
    times = []
    epochs = 10
    for i in range(n):
        st.set_lr(st.first_arch_epoch(epochs), epochs)
        t0 = time.perf_counter()
        st.step(batches[2 * i], batches[2 * i + 1], loss_fn=sp.loss,
                epoch=st.first_arch_epoch(epochs),
                epochs=epochs, step=i, steps_per_epoch=n)
        times.append(time.perf_counter() - t0)
    timed = times[warmup:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    def one():
        st.step(batches[0], batches[1], loss_fn=sp.loss, epoch=st.first_arch_epoch(epochs),
                epochs=epochs,
                step=0, steps_per_epoch=n)

    saved = saved_bytes(one)
    step_flops = None
    if flops:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            one()
        step_flops = fc.get_total_flops()
    return {"strategy": strategy, "space": space, "C": C, "N": N, "batch": batch,
            "options": options, "candidates": sp.choices()[0].shape[1],
            "threads": torch.get_num_threads(), "steps": len(timed),
            "step_median_s": statistics.median(timed), "step_min_s": min(timed),
            "peak_rss_mb": round(peak, 1), "rss_before_steps_mb": round(rss0, 1),
            "step_memory_mb": round(peak - rss0, 1),
            "saved_activations_mb": round(saved / 2 ** 20, 3), "step_flops": step_flops,
            "strategy_options": strategy_options or {}, "torch": torch.__version__}


def saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``fn`` runs: the
    activation memory of a step, independent of the allocator."""
    import torch
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def measure_in_subprocess(strategy, space="nb201", C=16, N=1, batch=64, size=32, steps=20,
                          warmup=3, threads=2, options=None, strategy_options=None,
                          flops=False) -> dict:
    """Run :func:`measure` in a fresh process so that its peak RSS is this strategy's own."""
    cmd = [sys.executable, __file__, "--one", strategy, "--space", space, "--batch", str(batch),
           "--size", str(size), "--steps", str(steps), "--warmup", str(warmup),
           "--threads", str(threads), "--options", json.dumps(options or {}),
           "--strategy-options", json.dumps(strategy_options or {})]
    if flops:
        cmd.append("--flops")
    if C is not None:
        cmd += ["--C", str(C)]
    if N is not None:
        cmd += ["--N", str(N)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.split("JSON ", 1)[1])


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
    ap.add_argument("--options", default="{}", help="space options as JSON")
    ap.add_argument("--strategy-options", default="{}", help="strategy options as JSON")
    ap.add_argument("--flops", action="store_true", help="also count the FLOPs of one step")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--block", default="step_time",
                    help="the RESULTS.md block to write (one per space / configuration)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one strategy, print JSON
    args = ap.parse_args()
    if args.one:
        res = measure(args.one, args.space, args.C, args.N, args.batch, args.steps, args.warmup,
                      args.threads, args.size, json.loads(args.options),
                      json.loads(args.strategy_options), args.flops)
        print("JSON " + json.dumps(res))
        return
    from archgrad.methods import STRATEGIES
    names = args.strategies or STRATEGIES.names()
    rows = []
    for name in names:
        row = measure_in_subprocess(name, args.space, args.C, args.N, args.batch, args.size,
                                    args.steps, args.warmup, args.threads,
                                    json.loads(args.options))
        rows.append(row)
        print(f"{name:<20} {row['step_median_s']:.4f} s/step (min {row['step_min_s']:.4f})  "
              f"peak RSS {row['peak_rss_mb']:.0f} MB (+{row['step_memory_mb']:.0f} MB by the "
              f"steps)", flush=True)
    if args.write:
        write_results(rows, args)


def write_results(rows, args):
    from _results import write_block
    what = f"C={args.C}, N={args.N}, batch {args.batch}, {args.size}x{args.size} random inputs"
    if args.space in ("darts-rnn", "advantagenas-rnn"):
        what = f"options {args.options}, batch {args.batch}, windows of {args.size} tokens"
    table = [f"Search step on the `{args.space}` supernet, {what}, {args.threads} threads, "
             f"CPU ({platform.processor() or platform.machine()}), torch {rows[0]['torch']}; "
             f"median of {args.steps} steps after {args.warmup} warm-up. "
             f"Measured {time.strftime('%Y-%m-%d')} by `python bench/step_time.py --write`.",
             "", "| strategy | s/step (median) | s/step (min) | peak RSS (MB) | "
                 "added by the steps (MB) | saved activations (MB) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        table.append(f"| {r['strategy']} | {r['step_median_s']:.4f} | {r['step_min_s']:.4f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['step_memory_mb']:.0f} | "
                     f"{r['saved_activations_mb']:.0f} |")
    heading = "Step time and memory per strategy" + \
        ("" if args.block == "step_time" else f" ({args.space})")
    write_block(args.block, heading, "\n".join(table))


if __name__ == "__main__":
    main()
