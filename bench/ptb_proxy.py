#!/usr/bin/env python
"""PTB on a CPU: DARTS's recurrent search at the darts-rnn protocol's proxy scale, the found cell
retrained, and DARTS_V2 retrained at the same budget beside it; validation / test perplexity.

    python bench/ptb_proxy.py --data-dir ../shared/data/ptb [--out /tmp/ptb-proxy] [--write]

Runs `archgrad reproduce darts-rnn --scale proxy --strategies darts --seeds 0` (the search and
the retraining of the found cell with the protocol's proxy settings) and `archgrad train --space
darts-rnn --genotype DARTS_V2` with the same training settings. About 40 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", default="ptb-proxy")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    from archgrad import protocols
    proto = protocols.load("darts-rnn").at_scale("proxy")
    subset, retrain = proto.search["subset"], proto.retrain_kwargs()
    exe = [sys.executable, "-m", "archgrad"]
    subprocess.run(exe + ["reproduce", "darts-rnn", "--scale", "proxy", "--strategies", "darts",
                          "--seeds", "0", "--data-dir", args.data_dir, "--out",
                          str(out / "search"), "--quiet"], check=True)
    run = out / "search" / "runs" / "darts-seed0"
    found = json.loads((run / "retrain" / "train_result.json").read_text())
    search = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    v2_dir = out / "darts-v2"
    if not (v2_dir / "train_result.json").is_file():
        cmd = exe + ["train", "--space", "darts-rnn", "--genotype", "DARTS_V2", "--dataset",
                     "ptb", "--data-dir", args.data_dir, "--subset", str(subset), "--json"]
        cmd += [a for k, v in retrain.items() for a in ("--set", f"{k}={v}")]
        cmd += ["--resume", str(v2_dir)] if (v2_dir / "train_config.json").is_file() else \
            ["--out", str(v2_dir)]
        subprocess.run(cmd, check=True, capture_output=True)
    v2 = json.loads((v2_dir / "train_result.json").read_text())
    rows = [("found by darts (seed 0)", found), ("DARTS_V2", v2)]
    for name, r in rows:
        print(f"{name:<24} valid {r['valid_ppl']:.1f}  test {r['test_ppl']:.1f}  "
              f"({r['params']:,} parameters, {r['train_time_s']:.0f} s)")
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from _results import write_block
        last = search[-1]
        sp = proto.space
        per_epoch = round(sum(r['steps'] for r in search) / len(search))
        lines = [f"`python bench/ptb_proxy.py --data-dir ../shared/data/ptb --write` "
                 f"({time.strftime('%Y-%m-%d')}, 2 CPU cores): DARTS (first order) searched "
                 f"the darts-rnn cell with embedding / hidden size {sp['ninp']} / {sp['nhid']} "
                 f"on the first {subset:,} tokens of PTB's training split, {len(search)} "
                 f"epochs of about {per_epoch} steps (batch "
                 f"{proto.search['batch_size']}, windows of about 35); search "
                 f"{sum(r['time_s'] for r in search):.0f} s, final supernet validation "
                 f"perplexity {last['valid_ppl']:.0f}, largest probability per edge "
                 f"{last['max_prob']:.3f} (uniform 0.2). Each cell then trained with DARTS's "
                 f"evaluation recipe (batch 64, SGD lr 20, ASGD switch enabled) changed by "
                 f"{', '.join(f'{k}={v}' for k, v in retrain.items())}; validation at batch 10 "
                 f"and test at batch 1 on the whole splits.", "",
                 "| cell | parameters | valid ppl | test ppl | training s |",
                 "| --- | ---: | ---: | ---: | ---: |"]
        for name, r in rows:
            lines.append(f"| {name}: `{r['genotype']}` | {r['params']:,} | "
                         f"{r['valid_ppl']:.1f} | {r['test_ppl']:.1f} | "
                         f"{r['train_time_s']:.0f} |")
        write_block("ptb_proxy", "PTB proxy: a searched recurrent cell beside DARTS_V2",
                    "\n".join(lines))


if __name__ == "__main__":
    main()
