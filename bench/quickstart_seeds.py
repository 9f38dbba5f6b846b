#!/usr/bin/env python
"""The README's main job over seeds and thread counts: how often the cell it finds ranks where.

Runs ``archgrad search --config CONFIG --seed S`` (default: the quickstart) for every seed and
thread count (other thread counts change the floating-point order of the reductions, as another
processor does), each in its own process, and records the NAS-Bench-201 rank and percentile of
the final cell on CIFAR-10, the discretization gap and the wall time. Resumable: results go to
``--log`` (JSONL) as they come, and the runs already there are skipped.

    python bench/quickstart_seeds.py [--seeds 0 1 ... 9] [--threads 1 2] [--jobs 2] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import HERE, emit


def one_run(config: str, seed: int, threads: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        env = dict(os.environ, ARCHGRAD_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "archgrad", "search", "--config", config,
                            "--seed", str(seed), "--out", str(run), "--quiet", *extra],
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            return {"seed": seed, "threads": threads, "error": p.stderr.strip()[-300:]}
        r = json.loads((run / "result.json").read_text())
    b = r["benchmark"]
    return {"seed": seed, "threads": threads, "genotype": r["genotype"],
            "rank": b["cifar10_rank"], "test_acc": b["cifar10"],
            "supernet_valid_acc": r.get("supernet_valid_acc"),
            "derived_valid_acc": r.get("derived_valid_acc"), "wall_s": round(wall, 1)}


def table(rows: list[dict], config: str, threads_list: list[int], jobs: int) -> str:
    ok = [r for r in rows if "rank" in r]
    lines = [f"`python bench/quickstart_seeds.py --config {config} --seeds "
             f"{' '.join(str(s) for s in sorted({r['seed'] for r in rows}))} --threads "
             f"{' '.join(map(str, threads_list))} --jobs {jobs} --write` "
             f"({time.strftime('%Y-%m-%d')}): "
             f"`archgrad search --config {config} --seed S`, each in its own process with S's "
             f"thread count; rank of the final cell among NAS-Bench-201's 15,625 on CIFAR-10 "
             f"(1 = best). Wall time of the search itself (no install), {jobs} at once on this "
             f"machine.", "",
             "| seed | threads | rank | top % | CIFAR-10 test acc | wall (s) | cell |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["threads"])):
        if "rank" not in r:
            lines.append(f"| {r['seed']} | {r['threads']} | failed | | | | {r['error'][:80]} |")
            continue
        top = 100 * r["rank"] / 15625
        lines.append(f"| {r['seed']} | {r['threads']} | {r['rank']} | {top:.1f} | "
                     f"{r['test_acc']:.2f} | {r['wall_s']} | "
                     f"{r['genotype'].replace('|', chr(92) + '|')} |")
    if ok:
        tops = sorted(100 * r["rank"] / 15625 for r in ok)
        n = len(ok)
        within = {k: sum(t <= k for t in tops) for k in (1, 5, 10, 25, 50)}
        lines += ["", f"{n} runs: median rank {statistics.median(r['rank'] for r in ok):.0f} "
                  f"(top {statistics.median(tops):.1f}%); in the top 1% {within[1]}/{n}, top 5% "
                  f"{within[5]}/{n}, top 10% {within[10]}/{n}, top 25% {within[25]}/{n}, top 50% "
                  f"{within[50]}/{n}; wall {min(r['wall_s'] for r in ok):.0f}-"
                  f"{max(r['wall_s'] for r in ok):.0f} s. Runs of one seed that differ only in "
                  f"the thread count: {_flips(ok)}."]
    return "\n".join(lines)


def _flips(ok: list[dict]) -> str:
    by_seed: dict = {}
    for r in ok:
        by_seed.setdefault(r["seed"], set()).add(r["genotype"])
    multi = [s for s, g in by_seed.items() if len(g) > 1]
    seeds = [s for s in by_seed if len({r["threads"] for r in ok if r["seed"] == s}) > 1]
    return f"{len(multi)} of {len(seeds)} seeds found another cell with another thread count"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="quickstart")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="searches at once")
    ap.add_argument("--log", default=str(HERE / "quickstart_seeds.jsonl"))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("extra", nargs="*", help="more search options (after --)")
    args = ap.parse_args()
    log = Path(args.log)
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] \
        if log.exists() else []
    rows = [r for r in rows if r.get("config", "quickstart") == args.config]
    done = {(r["seed"], r["threads"]) for r in rows if "rank" in r}
    todo = [(s, t) for s in args.seeds for t in args.threads if (s, t) not in done]

    def run(st):
        r = dict(one_run(args.config, st[0], st[1], args.extra), config=args.config)
        with log.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(json.dumps(r), flush=True)
        return r

    with ThreadPoolExecutor(args.jobs) as ex:
        new = list(ex.map(run, todo))
    rows = [r for r in rows if (r["seed"], r["threads"]) not in {(x["seed"], x["threads"])
                                                                 for x in new}] + new
    rows = [r for r in rows if r["seed"] in args.seeds and r["threads"] in args.threads]
    stem = Path(args.config).stem
    name = "quickstart_seeds" if args.config == "quickstart" else f"quickstart_seeds_{stem}"
    heading = "The quickstart over seeds and thread counts" + (
        "" if args.config == "quickstart" else f" ({stem}, a candidate)")
    emit(args.write, name, heading, table(rows, args.config, args.threads, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
