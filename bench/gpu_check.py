#!/usr/bin/env python
"""The first GPU's check: one script that proves the CUDA path and measures it, inside a wall
budget it keeps by itself (default 450 s), printing every figure as it comes so that a run cut
off still tells.

Phases, in order (each skipped, and said so, when the budget left is below its estimate):

1. ``cuda`` tests: ``pytest -m cuda tests/test_cuda.py`` (every strategy on every space on the
   GPU, CPU = GPU for dense steps, bf16/fp16 vs fp32, host reads, resident data, export,
   one-process NCCL torchrun and resume);
2. step time and peak GPU memory per strategy on the NB201 supernet (C=16, N=5; batch 64 and
   256; fp32 and bf16), and on the DARTS space's search network (C=16, 8 cells, batch 64);
3. one epoch of a full-scale NB201 DARTS search (25k/25k of CIFAR-10, batch 64, C=16, N=5;
   on ``--data-dir``'s CIFAR-10 where given, else images of its shape), and the whole search
   (50 epochs) extrapolated beside the published 10,890 GPU-seconds (NAS-Bench-201, Table 5);
4. K searches sharing the GPU (``sweep --workers K``, K = 1, 2, 4, 8): searches per hour.

Not in it yet: NNI 3.0 on the same GPU (bench/vs_nni.py measures both on the CPU only; NNI's
peer script in ../shared/peers drives Lightning on the CPU accelerator).

Writes ``--json`` (default bench/gpu_check.json) after every phase and, with ``--write``, a block
for bench/RESULTS.md.

    python bench/gpu_check.py [--budget 450] [--write] [--data-dir DIR]
    python bench/gpu_check.py --dry-run     # no GPU: every phase at its smallest, on the CPU
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
PUBLISHED_NB201_DARTS_S = 10_890  # NAS-Bench-201 Table 5: DARTS-V1's search, GPU-seconds
#: strategies measured first (the budget may stop the phase before the rest)
FIRST = ["darts", "darts-2nd", "gdas", "snas", "pcdarts", "drnas", "sdarts-rs", "gaea-darts",
         "reinforce", "random-ws"]


class Check:
    def __init__(self, args):
        self.args = args
        self.t0 = time.perf_counter()
        self.results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": args.dry_run,
                              "budget_s": args.budget, "phases": {}}
        self.json = Path(args.json)

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def say(self, *parts) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s]", *parts, flush=True)

    def save(self) -> None:
        from archgrad.runs.rundir import atomic_write_json
        self.results["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        atomic_write_json(self.json, self.results)

    def phase(self, name: str, estimate_s: float, fn) -> None:
        if self.left() < estimate_s:
            self.say(f"{name}: skipped ({self.left():.0f} s left, needs about {estimate_s:.0f})")
            self.results["phases"][name] = {"skipped": f"budget ({self.left():.0f} s left)"}
            self.save()
            return
        self.say(f"{name}: start")
        t = time.perf_counter()
        out = self.results["phases"].setdefault(name, {})
        try:
            fn(out)
        except Exception as e:  # one phase's failure must not cost the others' figures
            out["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            self.say(f"{name}: FAILED {out['error']}")
        out["wall_s"] = round(time.perf_counter() - t, 1)
        self.save()


# ---- phase 1: the cuda tests --------------------------------------------------------------------
def cuda_tests(c: Check, out: dict) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_cuda.py")]
    env = dict(os.environ)
    if c.args.dry_run:  # collected only: they import and are found (they skip without a GPU)
        cmd.append("--collect-only")
    limit = max(30.0, min(c.left() - 60, 240.0))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit,
                           cwd=ROOT)
        tail = (p.stdout + p.stderr).strip().splitlines()
        out["summary"] = tail[-1] if tail else ""
        out["returncode"] = p.returncode
        out["failures"] = [x for x in tail if x.startswith("FAILED")][:20]
    except subprocess.TimeoutExpired:
        out["summary"], out["returncode"] = f"cut off after {limit:.0f} s", None
    c.say("cuda tests:", out["summary"])
    for f in out.get("failures", []):
        c.say("  ", f)


# ---- phase 2: step time and memory ---------------------------------------------------------------
def _step_time(strategy: str, space: str, opts: dict, batch: int, amp: str | None, steps: int,
               warmup: int, device: str, size: int = 32) -> dict:
    import torch

    from archgrad.methods import make_strategy
    from archgrad.search import AMP_DTYPES
    from archgrad.spaces import get_space
    torch.manual_seed(0)
    sp = get_space(space, **opts)
    model = sp.supernet().to(device)
    st = make_strategy(strategy)
    st.setup(sp.choices(), model, seed=0, device=torch.device(device),
             costs=sp.op_costs() if st.needs_costs else None)
    if amp:
        st.amp = AMP_DTYPES[amp]
        if amp == "fp16":
            st.scaler = torch.amp.GradScaler(torch.device(device).type)
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(device) for t in sp.example_batch(batch, g, size))
               for _ in range(2 * (steps + warmup))]
    epochs = 10
    epoch = st.first_arch_epoch(epochs)
    st.set_lr(epoch, epochs)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + warmup):
        t = time.perf_counter()
        st.step(batches[2 * i], batches[2 * i + 1], loss_fn=sp.loss, epoch=epoch, epochs=epochs,
                step=i, steps_per_epoch=steps + warmup)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    times.sort()
    res = {"step_ms": round(1000 * times[len(times) // 2], 2)}
    if cuda:
        res["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    del model, st, batches
    if cuda:
        torch.cuda.empty_cache()
    return res


def step_times(c: Check, out: dict) -> None:
    from archgrad.methods import STRATEGIES
    dry = c.args.dry_run
    dev = c.args.device
    names = FIRST + [n for n in STRATEGIES.names() if n not in FIRST]
    if dry:
        names = names[:2]
    nb = dict(C=4, N=1) if dry else dict(C=16, N=5)
    dc = dict(C=4, layers=3) if dry else dict(C=16, layers=8)
    steps, warm = (1, 1) if dry else (8, 3)
    cases = [("nb201", nb, b, amp) for b in ((8,) if dry else (64, 256))
             for amp in (None, "bf16")] + [("darts", dc, 8 if dry else 64, None)]
    rows = out.setdefault("rows", [])
    stop_at = 25 if dry else 150  # seconds left for the later phases
    for space, opts, batch, amp in cases:
        for name in names:
            if c.left() < stop_at:
                out["cut"] = f"budget: stopped before {space} {name} batch {batch}"
                c.say(out["cut"])
                return
            try:
                r = _step_time(name, space, opts, batch, amp, steps, warm, dev,
                               size=8 if dry else 32)
            except Exception as e:
                r = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
            row = {"strategy": name, "space": space, "batch": batch, "dtype": amp or "fp32",
                   **r}
            rows.append(row)
            c.say(f"step {space} {name} batch {batch} {amp or 'fp32'}:",
                  r.get("error") or f"{r['step_ms']} ms" + (
                      f", peak {r['peak_mb']} MB" if "peak_mb" in r else ""))
        c.save()


# ---- phase 3: one epoch at full scale ------------
def full_epoch(c: Check, out: dict) -> None:
    import _gpu_data  # noqa: F401 (registers cifar-shaped)

    import archgrad
    dry = c.args.dry_run
    if c.args.data_dir:
        data = dict(dataset="cifar10", data_dir=c.args.data_dir)
    else:
        data = dict(dataset="cifar-shaped")
    kw = dict(space="nb201", strategy="darts", epochs=1, batch_size=64, device=c.args.device,
              C=4 if dry else 16, N=1 if dry else 5, **data)
    t = time.perf_counter()
    res = archgrad.search(**kw)
    wall = time.perf_counter() - t
    rec = res.history[-1]
    out.update(dataset=data["dataset"], steps=rec.get("steps"), epoch_s=round(wall, 1),
               search_50_epochs_s=round(50 * wall), published_s=PUBLISHED_NB201_DARTS_S,
               ratio_to_published=round(50 * wall / PUBLISHED_NB201_DARTS_S, 3))
    c.say(f"full-scale NB201 DARTS epoch ({data['dataset']}): {wall:.1f} s, {rec.get('steps')} "
          f"steps; 50 epochs ~ {50 * wall:.0f} s vs published {PUBLISHED_NB201_DARTS_S} s")


# ---- phase 4: searches sharing the GPU ------------
def sharing(c: Check, out: dict) -> None:
    import archgrad
    dry = c.args.dry_run
    ks = (1, 2) if dry else (1, 2, 4, 8)
    env_old = os.environ.get("ARCHGRAD_PLUGINS")
    os.environ["ARCHGRAD_PLUGINS"] = "_gpu_data"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    rows = out.setdefault("rows", [])
    try:
        for k in ks:
            if c.left() < (20 if dry else 60):
                out["cut"] = f"budget: stopped before K={k}"
                c.say(out["cut"])
                break
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                res = archgrad.run_sweep(["darts"], list(range(k)), out=Path(tmp) / "sw",
                                         workers=k, devices=[c.args.device], space="nb201",
                                         dataset="cifar-shaped", subset=None if dry else 5000,
                                         C=4 if dry else 16, N=1 if dry else 5, epochs=1,
                                         batch_size=64)
                wall = time.perf_counter() - t
            row = {"workers": k, "searches": k, "wall_s": round(wall, 1),
                   "searches_per_hour": round(3600 * k / wall, 1), "done": res["done"]}
            rows.append(row)
            c.say(f"{k} searches at once: {wall:.1f} s, {row['searches_per_hour']} searches/h")
            c.save()
    finally:
        if env_old is None:
            os.environ.pop("ARCHGRAD_PLUGINS", None)
        else:
            os.environ["ARCHGRAD_PLUGINS"] = env_old


def results_block(r: dict) -> str:
    ph = r["phases"]
    lines = [f"`python bench/gpu_check.py`, {r['date']}, {r.get('device', '?')}; wall "
             f"{r.get('elapsed_s')} s of a {r['budget_s']} s budget.", ""]
    t = ph.get("cuda tests", {})
    if t:
        lines += [f"CUDA tests: {t.get('summary', t.get('skipped', '?'))}", ""]
    rows = ph.get("step time", {}).get("rows", [])
    if rows:
        lines += ["| space | strategy | batch | dtype | step (ms) | peak GPU memory (MB) |",
                  "| --- | --- | ---: | --- | ---: | ---: |"]
        lines += [f"| {x['space']} | {x['strategy']} | {x['batch']} | {x['dtype']} | "
                  f"{x.get('step_ms', x.get('error', '-'))} | {x.get('peak_mb', '-')} |"
                  for x in rows]
        lines.append("")
    e = ph.get("full-scale epoch", {})
    if "epoch_s" in e:
        lines += [f"Full-scale NB201 DARTS (C=16, N=5, batch 64, 25k/25k, {e['dataset']}): one "
                  f"epoch {e['epoch_s']} s ({e['steps']} steps); 50 epochs ~ "
                  f"{e['search_50_epochs_s']} s against the published {e['published_s']} "
                  f"GPU-seconds (x{e['ratio_to_published']}).", ""]
    s = ph.get("sharing", {}).get("rows", [])
    if s:
        lines += ["| searches at once | wall (s) | searches per hour |", "| ---: | ---: | ---: |"]
        lines += [f"| {x['workers']} | {x['wall_s']} | {x['searches_per_hour']} |" for x in s]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=450.0, help="wall seconds in all (450)")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: every phase at its smallest on the CPU")
    ap.add_argument("--json", default=str(HERE / "gpu_check.json"))
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 for the full-scale epoch")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args(argv)
    import torch
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --dry-run to check the script on the CPU",
              file=sys.stderr)
        return 2
    args.device = "cpu" if args.dry_run else "cuda"
    c = Check(args)
    c.results["device"] = torch.cuda.get_device_name(0) if not args.dry_run else "cpu (dry run)"
    c.results["torch"] = torch.__version__
    c.say(f"gpu_check on {c.results['device']}, torch {torch.__version__}, budget "
          f"{args.budget:.0f} s")
    dry = args.dry_run
    if dry:  # the dataset of CIFAR-10's shape, smaller (its workers read it too)
        os.environ["ARCHGRAD_CIFAR_SHAPED_N"] = "300"
    c.phase("cuda tests", 10 if dry else 60, lambda out: cuda_tests(c, out))
    c.phase("step time", 5 if dry else 60, lambda out: step_times(c, out))
    c.phase("full-scale epoch", 5 if dry else 60, lambda out: full_epoch(c, out))
    c.phase("sharing", 5 if dry else 60, lambda out: sharing(c, out))
    block = results_block(c.results)
    print("\n" + block)
    if args.write and not dry:
        from _results import write_block
        write_block("gpu-check", "GPU check (bench/gpu_check.py)", block)
    c.say("done")
    failed = [n for n, p in c.results["phases"].items() if "error" in p]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
