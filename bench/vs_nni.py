#!/usr/bin/env python
"""archgrad versus NNI 3.0 on the same NAS-Bench-201 supernet, run side by side, interleaved.

Configuration of ../shared/peers (NNI's NasBench201(stem_out_channels=16,
num_modules_per_stack=1), batch 64, random 32x32 inputs, 10 classes, 2 threads) with NNI's
defaults set on both sides: weights Adam lr 1e-3 without weight decay or clipping, architecture
Adam (3e-4, betas (0.5, 0.999), weight decay 1e-3). Every measurement runs in its own process;
each repetition runs every pair, alternating which side goes first, after waiting for an idle
machine (runs that other processes disturbed are repeated). Medians over repetitions of each run's
median step time; peak RSS per process. archgrad sets glibc's allocator to keep freed blocks
for reuse (archgrad.runtime, applied by Strategy.setup on CPU); NNI runs as it comes and, for
the pairs in --tuned-nni, also with the same setting through glibc's environment variables.

Pairs (one step = what each does per iteration):
  darts     vs NNI DARTS         architecture step (validation batch) + weight step
  snas      vs NNI GumbelDARTS   NNI's is bi-level; ``snas`` runs bi-level here for the same work
                                 (and single level, SNAS's own step, is reported beside it)
  proxyless vs NNI Proxyless     architecture step + weight step
  reinforce vs NNI ENAS          NNI times its weight steps ('main') and its controller steps on
                                 validation batches ('ctrl') apart: compared with their sum
  random-ws vs NNI RandomOneShot weight step on a uniformly sampled subnet

Needs the peer environment (bash ../shared/peers/setup_peer.sh, /tmp/peers/venv).

    python bench/vs_nni.py [--reps 5] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _results import HERE, write_block

PEERS = Path(os.environ.get("PEERS_DIR", HERE.parent.parent / "shared" / "peers"))
PEER_PY = os.environ.get("PEER_PY", "/tmp/peers/venv/bin/python")
COMMON = {"optimizer": "adam", "lr": 1e-3, "lr_min": 1e-3, "weight_decay": 0.0,
          "grad_clip": None}
PAIRS = [
    ("darts", {}, "darts"),
    ("snas", {"bilevel": True}, "gumbel"),
    ("proxyless", {}, "proxyless"),
    ("reinforce", {}, "enas"),
    ("random-ws", {}, "random"),
]
HZ = os.sysconf("SC_CLK_TCK")


def _busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / HZ


def _children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_idle(max_wait=600.0, frac=0.1):
    t0 = time.time()
    while time.time() - t0 < max_wait:
        b0 = _busy_s()
        time.sleep(2.0)
        if (_busy_s() - b0) / 2.0 < frac * 2:
            return
    print("warning: the machine did not become idle; measuring anyway", flush=True)


def run(cmd, args, env=None) -> dict:
    """Run a JSON-printing benchmark process; retry when other processes disturbed it."""
    for attempt in range(args.retries + 1):
        wait_idle()
        b0, c0, t0 = _busy_s(), _children_cpu_s(), time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=PEERS,
                           env={**os.environ, **(env or {})})
        wall = time.time() - t0
        others = max(0.0, _busy_s() - b0 - (_children_cpu_s() - c0)) / wall
        res = next((json.loads(line[5:]) for line in p.stdout.splitlines()
                    if line.startswith("JSON ")), None)
        if res is None:
            raise RuntimeError(f"{cmd[1]} failed:\n{p.stderr[-2000:]}")
        res["others_cpu_frac"] = round(others, 3)
        if others <= args.max_others:
            return res
        print(f"  disturbed ({others:.2f} of a core used by others), repeating", flush=True)
    return res


def ours(strategy, opts, args, flops=False) -> dict:
    cmd = [sys.executable, str(HERE / "step_time.py"), "--one", strategy, "--C", "16", "--N",
           "1", "--batch", "64", "--size", "32", "--steps", str(args.steps), "--warmup", "3",
           "--threads", "2", "--strategy-options", json.dumps({**COMMON, **opts})]
    if flops:
        cmd.append("--flops")
    return run(cmd, args)


# glibc's environment variables for the setting archgrad applies itself
# (archgrad.runtime.keep_freed_memory): NNI measured with it too, so that the table separates
# what the allocator setting buys from what the supernet and the step do
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
                "MALLOC_TRIM_THRESHOLD_": str(2 ** 31 - 1)}


def nni(tag, args, tuned=False) -> dict:
    return run([PEER_PY, str(PEERS / "peer_darts_nb201.py"), "--strategy", tag, "--C", "16",
                "--N", "1", "--batch", "64", "--steps", str(args.steps), "--warmup", "3",
                "--threads", "2", "--json"], args, TUNED_MALLOC if tuned else None)


def matmul_gflops(threads=2, n=2048, reps=10) -> float:
    import torch
    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    for _ in range(3):
        a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--max-others", type=float, default=0.15)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--tuned-nni", nargs="*", default=["darts"],
                    help="pairs where NNI also runs with archgrad's allocator setting")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not Path(PEER_PY).exists():
        sys.exit(f"no peer environment at {PEER_PY}: run bash {PEERS}/setup_peer.sh")
    pairs = [p for p in PAIRS if not args.only or p[0] in args.only]
    rows = {p[0]: {"ours": [], "nni": [], "ours_rss": [], "nni_rss": [], "single": [],
                   "nni_tuned": []} for p in pairs}
    for rep in range(args.reps):
        for i, (ours_name, opts, tag) in enumerate(pairs):
            sides = ["ours", "nni"] if (rep + i) % 2 == 0 else ["nni", "ours"]
            if ours_name in args.tuned_nni:
                sides.append("nni_tuned")
            for side in sides:
                if side == "ours":
                    r = ours(ours_name, opts, args)
                    rows[ours_name]["ours"].append(r["step_median_s"])
                    rows[ours_name]["ours_rss"].append(r["peak_rss_mb"])
                else:
                    r = nni(tag, args, tuned=side == "nni_tuned")
                    t = r["step_median_s"] + (r.get("ctrl_step_median_s") or 0.0)
                    rows[ours_name][side].append(t)
                    if side == "nni":
                        rows[ours_name]["nni_rss"].append(r["peak_rss_mb"])
            if ours_name == "snas":  # SNAS's own single-level step, for reference
                rows["snas"]["single"].append(ours("snas", {}, args)["step_median_s"])
            d = rows[ours_name]
            tuned = f"  NNI (allocator as ours) {d['nni_tuned'][-1]:.4f} s" \
                if d["nni_tuned"] else ""
            print(f"rep {rep + 1} {ours_name:<10} ours {d['ours'][-1]:.4f} s  NNI "
                  f"{d['nni'][-1]:.4f} s  ratio {d['ours'][-1] / d['nni'][-1]:.2f}{tuned}",
                  flush=True)
    peak = matmul_gflops()
    flops = ours("darts", {}, args, flops=True)["step_flops"]
    table = report(rows, peak, flops)
    print(table)
    if args.write:
        body = (f"`python bench/vs_nni.py --write` ({time.strftime('%Y-%m-%d')}, "
                f"{platform.machine()}, 2 threads, {args.reps} interleaved repetitions of "
                f"{args.steps} timed steps): NB201 supernet C=16, N=1, batch 64, 32x32 random "
                f"inputs; both sides with NNI's defaults (weights Adam 1e-3, architecture Adam "
                f"3e-4). NNI 3.0 with PyTorch Lightning 2.0.9, torch 2.13.0 CPU on both sides. "
                f"Ratio = archgrad / NNI (below 1: archgrad faster).\n\n{table}")
        write_block("vs_nni", "archgrad vs NNI 3.0 (same supernet, side by side)", body)


def report(rows, peak, flops):
    lines = ["| archgrad | NNI 3.0 | archgrad s/step | NNI s/step | ratio | archgrad peak RSS MB |"
             " NNI peak RSS MB |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    names = {"darts": "DARTS", "snas": "GumbelDARTS", "proxyless": "Proxyless",
             "reinforce": "ENAS (main + ctrl)", "random-ws": "RandomOneShot"}
    med = statistics.median
    for k, d in rows.items():
        label = "snas (bi-level)" if k == "snas" else k
        lines.append(f"| {label} | {names[k]} | {med(d['ours']):.4f} | {med(d['nni']):.4f} | "
                     f"{med(d['ours']) / med(d['nni']):.2f} | {med(d['ours_rss']):.0f} | "
                     f"{med(d['nni_rss']):.0f} |")
        if d["single"]:
            lines.append(f"| snas (single level, SNAS's step) | GumbelDARTS | "
                         f"{med(d['single']):.4f} | {med(d['nni']):.4f} | "
                         f"{med(d['single']) / med(d['nni']):.2f} | | |")
    tuned = [(k, d) for k, d in rows.items() if d["nni_tuned"]]
    if tuned:
        lines.append("")
        for k, d in tuned:
            lines.append(
                f"With archgrad's allocator setting (glibc keeps freed blocks for reuse, "
                f"`archgrad.runtime`) given to NNI too, through {' and '.join(TUNED_MALLOC)}: "
                f"NNI {names[k]} {med(d['nni_tuned']):.4f} s/step, ratio "
                f"{med(d['ours']) / med(d['nni_tuned']):.2f} for `{k}`.")
    if "darts" in rows and flops:
        t = med(rows["darts"]["ours"])
        lines.append("")
        lines.append(f"archgrad's `darts` step: {flops / 1e9:.1f} GFLOP (counted by "
                     f"torch.utils.flop_counter, forward and backward) in {t:.3f} s = "
                     f"{flops / t / 1e9:.1f} GFLOP/s, {100 * flops / t / 1e9 / peak:.0f}% of this "
                     f"machine's measured fp32 matrix-multiply rate ({peak:.0f} GFLOP/s, "
                     f"2048x2048, "
                     f"2 threads).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
