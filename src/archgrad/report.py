"""Compare search runs: a table of their final results and plots of their per-epoch records."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ArchgradError
from .rundir import atomic_write_text, read_json


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ArchgradError(f"{run_dir} is not a search run directory (no config.json)")
    try:
        cfg = read_json(run_dir / "config.json")["search"]
        metrics = run_dir / "metrics.jsonl"
        history = [json.loads(line) for line in metrics.read_text().splitlines()
                   if line.strip()] if metrics.is_file() else []
        final = read_json(run_dir / "result.json") if (run_dir / "result.json").is_file() \
            else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise ArchgradError(f"{run_dir}: a run file is damaged ({type(e).__name__}: "
                            f"{str(e)[:120]})") from None
    return {"dir": run_dir, "config": cfg, "history": history, "final": final,
            "label": f"{cfg['strategy']} ({run_dir.name})"}


def table(runs: list[dict]) -> str:
    lines = ["| run | strategy | space | dataset | epochs | supernet valid | derived valid "
             "(BN recal.) | NB201 CIFAR-10 | entropy | search s | genotype |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in runs:
        c, f = r["config"], r["final"] or {}

        def num(k, fmt="{:.2f}"):
            v = f.get(k)
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        bench = f.get("benchmark") or {}
        derived = f"{num('derived_valid_acc')} ({num('derived_valid_acc_bn')})"
        nb = bench.get("cifar10")
        nb = f"{nb:.2f}" if isinstance(nb, (int, float)) else "-"
        lines.append(
            f"| {r['dir'].name} | {c['strategy']} | {c['space']} | {c['dataset']} | "
            f"{len(r['history'])}/{c['epochs']} | {num('supernet_valid_acc')} | {derived} | "
            f"{nb} | {num('entropy', '{:.3f}')} | "
            f"{num('search_time_s', '{:.0f}')} | "
            f"{f.get('genotype', 'unfinished').replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("valid_acc", "supernet validation accuracy (%)"),
              ("train_loss", "training loss"), ("entropy", "architecture entropy (nats)")]
    if any(h.get("benchmark") for r in runs for h in r["history"]):
        panels.append(("benchmark", "NAS-Bench-201 CIFAR-10 accuracy of the derived cell (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels):
        for r in runs:
            xs, ys = [], []
            for h in r["history"]:
                v = h.get(key)
                if key == "benchmark":
                    v = (v or {}).get("cifar10")
                if isinstance(v, (int, float)):
                    xs.append(h["epoch"])
                    ys.append(v)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=2.5, label=r["label"])
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.ticklabel_format(axis="y", useOffset=False)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        tmp = path.with_name(f".{path.name}{suffix}.tmp")
        fig.savefig(tmp, format=suffix[1:], dpi=120)
        tmp.replace(path.with_suffix(suffix))
    plt.close(fig)


def is_search_run(path: str | Path) -> bool:
    p = Path(path)
    if not (p / "config.json").is_file():
        return False
    try:
        return isinstance(read_json(p / "config.json").get("search"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def compare(run_dirs, out: str | Path) -> dict:
    """Write ``out.md`` (a table of the runs' final results) and ``out.png`` / ``out.svg``
    (their per-epoch records). Directories that are not search runs (training runs, anything
    else a glob picks up) are skipped, each with a note."""
    runs, skipped = [], []
    for d in run_dirs:
        if is_search_run(d):
            runs.append(load_run(d))
        elif Path(d).is_dir() and (Path(d) / "train_config.json").is_file():
            skipped.append(f"{d} (a training run)")
        elif Path(d).exists():
            skipped.append(f"{d} (not a search run directory)")
        else:
            raise ArchgradError(f"{d} is not a search run directory (no such path)")
    if not runs:
        raise ArchgradError("archgrad compare needs at least one search run directory"
                            + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = "# Search runs compared\n\n" + table(runs) + f"\n\n![per-epoch records]({out.name}.png)\n"
    atomic_write_text(out.with_suffix(".md"), md)
    plot(runs, out)
    return {"runs": len(runs), "table": str(out.with_suffix(".md")),
            "figure": str(out.with_suffix(".png")), "skipped": skipped}
