"""Compare search runs: a table of their final results and plots of their per-epoch records."""
from __future__ import annotations

from pathlib import Path

from ..errors import ArchgradError
from ..runs import schemas
from ..runs.rundir import atomic_write_text, read_json
from .plot import epoch_axes, save


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ArchgradError(f"{run_dir} is not a search run directory (no config.json)")
    cfg = schemas.read(run_dir / "config.json")["search"]
    for k, kind in (("strategy", str), ("space", str), ("dataset", str), ("epochs", int)):
        if not isinstance(cfg.get(k), kind):
            raise ArchgradError(f"{run_dir / 'config.json'} is damaged (no search.{k})")
    metrics = run_dir / "metrics.jsonl"
    history = schemas.read_lines(metrics) if metrics.is_file() else []
    final = schemas.read(run_dir / "result.json") if (run_dir / "result.json").is_file() \
        else None
    label = f"{cfg['strategy']} ({run_dir.name})"
    return {"dir": run_dir, "config": cfg, "history": history, "final": final,
            "label": label}


def _retrain_section(sweep, by_group: dict, labels: dict, published: dict) -> list[str]:
    """The found architectures trained from scratch: validation and test perplexity (or test
    accuracy) per strategy, beside the published figures (``[published.valid]`` and
    ``[published.test]``)."""
    lines = ["## Found architectures trained from scratch", ""]
    pv, pt = published.get("valid", {}), published.get("test", {})
    lm = None
    body = []
    for group, items in by_group.items():
        vals, tests, best = [], [], None
        for rec, final, _ in items:
            d = sweep.runs_dir / rec["run"] / "retrain" / "train_result.json"
            if not d.is_file():
                continue
            try:
                r = schemas.read(d)
            except ArchgradError:
                continue
            lm = "test_ppl" in r if lm is None else lm
            v, t = (r.get("valid_ppl"), r.get("test_ppl")) if "test_ppl" in r else \
                (None, r.get("test_acc"))
            rec["retrain_valid"], rec["retrain_test"] = v, t
            if t is None:
                continue
            tests.append(t)
            if v is not None:
                vals.append(v)
                if best is None or v < best[0]:
                    best = (v, t)
        a, b = pv.get(group), pt.get(group)
        body.append((labels.get(group, group), len(tests), _fmt_ms(_mean_std(vals)),
                     _fmt_ms(_mean_std(tests)), f"{best[0]:.2f} / {best[1]:.2f}" if best else "–",
                     f"{a:.2f}" if isinstance(a, (int, float)) else "–",
                     f"{b:.2f}" if isinstance(b, (int, float)) else "–"))
    unit = "perplexity" if lm or lm is None else "accuracy (%)"
    # an image network's training reports the test split only: no validation columns then
    valid = lm or lm is None or pv or any(row[2] != "–" for row in body)
    head = ["strategy", "runs"] + ([f"valid {unit}"] if valid else []) + [f"test {unit}"] \
        + (["best by valid (valid / test)"] if valid else [])
    if pv or pt:
        head.append("published (valid / test)" if valid else "published (test)")
    lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name, n, v, t, bst, a, b in body:
        cells = [name, str(n)] + ([v] if valid else []) + [t] + ([bst] if valid else [])
        if pv or pt:
            cells.append(f"{a} / {b}" if valid else b)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    r = sweep.meta["retrain"]
    lines += ["Retraining: " + ", ".join(f"{k} {v}" for k, v in sorted(r.items())) + ".", ""]
    if published.get("source"):
        lines += [f"Published: {published['source']}.", ""]
    return lines


def _epochs_cell(r: dict) -> str:
    """Epochs done / epochs: a finished run's from its result (early stopping included), with
    a word where its metrics.jsonl holds another number of records."""
    total, n = r["config"]["epochs"], len(r["history"])
    if r["final"] is None:
        return f"{n}/{total}"
    done = r["final"].get("stopped_after_epoch")
    done = done if isinstance(done, int) and not isinstance(done, bool) else total
    return f"{done}/{total}" + ("" if n == done else f" (metrics.jsonl: {n} records)")


def table(runs: list[dict]) -> str:
    # accuracy (%) for image runs, perplexity for language models
    lines = ["| run | strategy | space | dataset | epochs | supernet valid (acc % / ppl) | "
             "derived valid (BN recal.) | NB201 CIFAR-10 | entropy | search s | genotype |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in runs:
        c, f = r["config"], r["final"] or {}

        def num(k, fmt="{:.2f}"):
            v = f.get(k)
            if not isinstance(v, (int, float)):
                return "-"
            return fmt.format(v) if abs(v) < 1e5 else f"{v:.3g}"  # a diverged perplexity

        bench = f.get("benchmark") or {}
        m = "ppl" if "supernet_valid_ppl" in f else "acc"  # a language model: perplexity
        derived = f"{num(f'derived_valid_{m}')} ({num(f'derived_valid_{m}_bn')})"
        nb = bench.get("cifar10")
        nb = f"{nb:.2f}" if isinstance(nb, (int, float)) else "-"
        lines.append(
            f"| {r['dir'].name} | {c['strategy']} | {c['space']} | {c['dataset']} | "
            f"{_epochs_cell(r)} | {num(f'supernet_valid_{m}')} | {derived} | "
            f"{nb} | {num('entropy', '{:.3f}')} | "
            f"{num('search_time_s', '{:.0f}')} | "
            f"{f.get('genotype', 'unfinished').replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lm = any("valid_ppl" in h for r in runs for h in r["history"])
    panels = [("valid_ppl", "supernet validation perplexity") if lm else
              ("valid_acc", "supernet validation accuracy (%)"),
              ("train_loss", "training loss"), ("entropy", "architecture entropy (nats)")]
    if any(h.get("benchmark") for r in runs for h in r["history"]):
        panels.append(("benchmark", "NAS-Bench-201 CIFAR-10 accuracy of the derived cell (%)"))
    if any("skip_connects" in h for r in runs for h in r["history"]):
        panels.append(("skip_connects", "skip connections in the derived (normal) cell"))
    if any("hessian_eig" in h for r in runs for h in r["history"]):
        panels.append(("hessian_eig", "dominant Hessian eigenvalue (architecture)"))
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
        epoch_axes(ax)
        if key == "skip_connects":  # a count
            from matplotlib.ticker import MaxNLocator
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:  # one legend, on the first panel with lines
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
            break
    fig.tight_layout()
    save(fig, path, dpi=120)
    plt.close(fig)


def is_search_run(path: str | Path) -> bool:
    p = Path(path)
    if not (p / "config.json").is_file():
        return False
    try:
        return isinstance(read_json(p / "config.json").get("search"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def _why(e: ArchgradError, run_dir) -> str:
    """'result.json is damaged' from 'RUN/result.json is damaged (...)'."""
    msg = str(e).removeprefix(f"{run_dir}/").removeprefix(f"{run_dir}: ")
    return msg.split(" (")[0]


def _unreadable(path: Path) -> bool:
    """A config.json that does not parse, or names a search section that is not one."""
    try:
        obj = read_json(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return path.is_file()
    return isinstance(obj, dict) and "search" in obj and not isinstance(obj["search"], dict)


def compare(run_dirs, out: str | Path) -> dict:
    """Write ``out.md`` (a table of the runs' final results) and ``out.png`` / ``out.svg``
    (their per-epoch records). A sweep's directory stands for its runs. Directories that are
    not search runs (training runs, anything else a glob picks up) are skipped, each with a
    note."""
    runs, skipped = [], []
    expanded = []
    for d in run_dirs:  # a sweep: its runs, in their order
        sweep = Path(d) / "runs"
        if (Path(d) / "sweep.json").is_file() and sweep.is_dir():
            expanded += sorted(str(r) for r in sweep.iterdir() if r.is_dir())
        else:
            expanded.append(d)
    for d in expanded:
        if is_search_run(d):
            try:
                runs.append(load_run(d))
            except ArchgradError as e:     # one damaged run in a glob does not stop the rest
                skipped.append(f"{d} ({_why(e, d)})")
        elif _unreadable(Path(d) / "config.json"):
            skipped.append(f"{d} (config.json is damaged)")
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
    figure = out.with_suffix(".png")  # what plot() writes, whatever suffix --out has
    md = "# Search runs compared\n\n" + table(runs) + f"\n\n![per-epoch records]({figure.name})\n"
    atomic_write_text(out.with_suffix(".md"), md)
    plot(runs, out)
    return {"runs": len(runs), "table": str(out.with_suffix(".md")),
            "figure": str(out.with_suffix(".png")), "skipped": skipped}


# ---- sweep reports --------------------------------------------------------------------------
BENCH_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


def _mean_std(xs: list[float]) -> tuple[float, float | None] | None:
    """Mean and sample standard deviation (None for a single value: it has none)."""
    import statistics
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _fmt_ms(ms, digits: int = 2) -> str:
    if ms is None:
        return "–"
    return f"{ms[0]:.{digits}f}" + ("" if ms[1] is None else f" ± {ms[1]:.{digits}f}")


def _own_derivation(final: dict | None) -> bool:
    """Whether a run's final cell comes from its own rule rather than the argmax of its
    distribution (random-ws's ranking, best-valid)."""
    d = str((final or {}).get("derive", ""))
    return d.startswith("rank-random") or d == "best-valid"


def _recovered_at(losses: list, every: int) -> int | None:
    """The first iteration from which the derived architecture's test loss stays 0 (toy)."""
    for i in range(len(losses)):
        if all(v == 0.0 for v in losses[i:]):
            return (i + 1) * every
    return None


def sweep_report(root: str | Path, out: str | Path | None = None) -> dict:
    """The report of a sweep (finished or not): ``report.md``, ``report.csv`` and the
    per-epoch figure ``report.png``, in ``out`` (default: the sweep directory)."""
    from ..benchmarks.nb201 import NB201Benchmark
    from .sweep import Sweep
    sweep = Sweep.load(Path(root))
    meta = sweep.meta
    out = Path(out) if out is not None else sweep.root
    proto = None
    if meta.get("protocol"):
        from ..protocols import load
        proto = load(meta["protocol"])
    derives = list(proto.derive) if proto else ["argmax"]
    labels = proto.labels if proto else {}
    published = proto.published if proto else {}
    rows, by_group = _collect_runs(sweep)

    # a grid may sweep the space itself: each run's own space decides its figures
    run_space = {spec.name: spec.kwargs.get("space") or meta.get("space") for spec in sweep.runs}
    spaces = set(run_space.values())
    space = spaces.pop() if len(spaces) == 1 else None   # None: several
    bench = NB201Benchmark.load() if "nb201" in run_space.values() else None
    lines = [f"# {proto.title if proto else 'Sweep ' + sweep.root.name}", ""]
    if proto:
        lines += [f"Protocol `{proto.name}`, scale `{meta.get('scale', 'full')}`: "
                  f"{proto.source}.", ""]
        if proto.description:
            lines += [" ".join(proto.description.split()), ""]
        note = proto.scale_note(meta.get("scale", "full"))
        if note:
            lines += ["Scale: " + " ".join(note.split()), ""]
    n_done = sum(1 for r, f, _ in rows if f)
    lines += [f"{n_done} of {len(rows)} runs finished"
              + ("" if n_done == len(rows) else " (a partial report)") + ".", ""]
    if meta.get("retrain"):
        lines += _retrain_section(sweep, by_group, labels, published)
    if bench is not None:
        lines += _benchmark_sections(bench, by_group, run_space, derives, labels, published)
    if space == "toy":
        lines += _toy_section(by_group, labels, published)
    if space not in ("nb201", "toy"):  # spaces without a table, and a grid over spaces
        lines += _supernet_section(rows, by_group, labels)
    lines += _cost_section(by_group, labels)
    figure = _sweep_figure(by_group, labels, out / "report", bench is not None, space == "toy")
    if figure:
        lines += [f"![search progress]({figure.name})", ""]
    lines += _run_notes(rows)
    atomic_write_text(out / "report.md", "\n".join(lines))
    _write_csv(rows, out / "report.csv")
    return {"report": str(out / "report.md"), "csv": str(out / "report.csv"),
            "figure": str(figure) if figure else None, "runs": len(rows), "finished": n_done}


def _collect_runs(sweep) -> tuple[list, dict]:
    """Every run's record, result and history, also by group (strategy and grid values)."""
    rows, by_group = [], {}
    for spec in sweep.runs:
        d = sweep.run_dir(spec)
        state = sweep.state(spec)
        final = None
        if state == "done":
            try:
                final = schemas.read(d / "result.json")
            except ArchgradError:
                final, state = None, "damaged"
        history = []
        if (d / "metrics.jsonl").is_file():
            try:
                history = schemas.read_lines(d / "metrics.jsonl")
            except ArchgradError:
                history = []
        group = spec.strategy + "".join(f" {k}={v}" for k, v in spec.values.items())
        rec = {"run": spec.name, "strategy": spec.strategy, "seed": spec.seed,
               **{f"grid_{k}": v for k, v in spec.values.items()}, "state": state,
               "epochs_done": len(history)}
        if final:
            rec.update(genotype=final.get("genotype"), argmax_genotype=final.get(
                "argmax_genotype"), process_best_genotype=final.get("process_best_genotype"),
                search_time_s=final.get("search_time_s"), steps=sum(h.get("steps", 0)
                                                                     for h in history),
                peak_rss_mb=final.get("peak_rss_mb"), entropy=final.get("entropy"),
                max_prob=final.get("max_prob"),
                supernet_valid_acc=final.get("supernet_valid_acc"),
                supernet_valid_loss=final.get("supernet_valid_loss"),
                found_teacher=final.get("found_teacher"))
        rows.append((rec, final, history))
        by_group.setdefault(group, []).append((rec, final, history))

    return rows, by_group


def _benchmark_sections(bench, by_group: dict, run_space: dict, derives: list, labels: dict,
                        published: dict) -> list[str]:
    """One table per derivation: the NAS-Bench-201 figures of each group's cells."""
    lines: list[str] = []
    pub_metric = published.get("metric", "cifar10")
    for mode in derives:
        ranked: set[str] = set()
        key = "argmax_genotype" if mode == "argmax" else \
            mode.replace("-", "_") + "_genotype"
        pub = published.get(mode, {})
        head = "| strategy | runs | " + " | ".join(f"NB201 {ds} (%)" for ds in
                                                  BENCH_DATASETS)
        head += f" | published ({pub_metric}) |" if pub else " |"
        lines += [f"## {mode}", "", head,
                  "| --- | ---: |" + " ---: |" * len(BENCH_DATASETS) + (" ---: |" if pub
                                                                      else "")]
        for group, items in by_group.items():
            if any(run_space[rec["run"]] != "nb201" for rec, _, _ in items):
                continue  # the benchmark has no table for the group's space
            vals = {ds: [] for ds in BENCH_DATASETS}
            for rec, final, _ in items:
                # a strategy that derives otherwise (RSPS ranks random cells, GAEA's
                # bi-level search keeps its best-validation epoch): its row is its own
                own = mode == "argmax" and _own_derivation(final)
                g = (final or {}).get("genotype" if own else key)
                if own:
                    ranked.add(labels.get(group, group))
                if g:
                    for ds in BENCH_DATASETS:
                        acc = bench.query(g, ds, "test")
                        vals[ds].append(acc)
                        rec[f"{mode}_{ds}"] = acc
            name = labels.get(group, group)
            cells = [_fmt_ms(_mean_std(vals[ds])) for ds in BENCH_DATASETS]
            line = f"| {name} | {len(vals['cifar10'])} | " + " | ".join(cells)
            if pub:
                p = pub.get(group)
                line += f" | {p:.2f} |" if isinstance(p, (int, float)) else " | – |"
            else:
                line += " |"
            lines.append(line)
        lines.append("")
        if ranked:
            lines += [f"{', '.join(sorted(ranked))}: no distribution to take the argmax "
                      f"of; the row is the strategy's own derivation, the best of its "
                      f"random cells ranked by shared-weight validation accuracy.", ""]
        if pub and published.get("source"):
            lines += [f"Published: {published['source']}.", ""]
    return lines


def _toy_section(by_group: dict, labels: dict, published: dict) -> list[str]:
    """Recovering the teacher (AdvantageNAS's Figure 1)."""
    import statistics
    lines: list[str] = []
    lines += ["## Recovering the teacher (Figure 1)", "",
              "| strategy | trials | found a* | iterations to recover (median) | final test "
              "loss (median) |", "| --- | ---: | ---: | ---: | ---: |"]
    every = 10
    for group, items in by_group.items():
        fin = [(r, f, h) for r, f, h in items if f]
        found = sum(1 for r, f, h in fin if f.get("found_teacher"))
        rec_at = [a for a in (_recovered_at([x.get("derived_loss") for x in h], every)
                              for _, _, h in fin) if a is not None]
        for r, f, h in fin:
            r["recovered_at"] = _recovered_at([x.get("derived_loss") for x in h], every)
            r["final_test_loss"] = h[-1].get("derived_loss") if h else None
        med_it = f"{statistics.median(rec_at):.0f}" if rec_at else "–"
        losses = [h[-1].get("derived_loss") for _, _, h in fin if h]
        med_loss = f"{statistics.median(losses):.2e}" if losses else "–"
        lines.append(f"| {labels.get(group, group)} | {len(fin)} | {found}/{len(fin)} | "
                     f"{med_it} | {med_loss} |")
    lines.append("")
    if published.get("source"):
        lines += [f"Published: {published['source']}.", ""]
    return lines


def _supernet_section(rows: list, by_group: dict, labels: dict) -> list[str]:
    """The supernet's figures, for spaces without a benchmark table."""
    lines: list[str] = []
    ppl = any(f and f.get("supernet_valid_ppl") is not None for r, f, _ in rows)
    m, title = ("ppl", "perplexity") if ppl else ("acc", "acc (%)")
    # the derived cells' skip connections (collapse) and evaluation size, where recorded
    extra = [(k, head, scale) for k, head, scale in (
        ("skip_connects", "skip connections (derived normal cell)", 1),
        ("eval_params", "evaluation network params (M)", 1e6))
        if any(f and f.get(k) is not None for _, f, _ in rows)]
    lines += ["## Supernet", "", f"| strategy | runs | supernet valid {title} | "
              "supernet valid loss |" + "".join(f" {h} |" for _, h, _ in extra),
              "| --- | ---: | ---: | ---: |" + " ---: |" * len(extra)]
    for group, items in by_group.items():
        acc = [f[f"supernet_valid_{m}"] for _, f, _ in items
               if f and f.get(f"supernet_valid_{m}") is not None]
        loss = [f["supernet_valid_loss"] for _, f, _ in items
                if f and f.get("supernet_valid_loss") is not None]
        cells = [_fmt_ms(_mean_std([f[k] / scale for _, f, _ in items
                                    if f and f.get(k) is not None]))
                 for k, _, scale in extra]
        lines.append(f"| {labels.get(group, group)} | {len(loss)} | "
                     f"{_fmt_ms(_mean_std(acc))} | {_fmt_ms(_mean_std(loss), 4)} |"
                     + "".join(f" {c} |" for c in cells))
    lines.append("")

    return lines


def _cost_section(by_group: dict, labels: dict) -> list[str]:
    """Search time, steps and peak memory per group."""
    import statistics
    lines: list[str] = []
    lines += ["## Search cost", "", "| strategy | runs | search time (s, mean) | steps | peak "
              "memory (MB, max) |", "| --- | ---: | ---: | ---: | ---: |"]
    for group, items in by_group.items():
        t = [r["search_time_s"] for r, f, _ in items if f and r.get("search_time_s")]
        st = [r["steps"] for r, f, _ in items if f]
        mem = [r["peak_rss_mb"] for r, f, _ in items if f and r.get("peak_rss_mb")]
        mean_t = statistics.fmean(t) if t else None
        lines.append(f"| {labels.get(group, group)} | {len(st)} | "
                     + ("–" if mean_t is None else f"{mean_t:.{0 if mean_t >= 10 else 1}f}")
                     + f" | {int(statistics.fmean(st)) if st else '–'} | "
                     + (f"{max(mem):.0f}" if mem else "–") + " |")
    lines.append("")
    return lines


def _run_notes(rows: list) -> list[str]:
    """The runs that failed, are damaged or are not finished, and what to do."""
    lines: list[str] = []
    failed = [r["run"] for r, _, _ in rows if r["state"] == "failed"]
    if failed:
        lines += ["Failed runs: " + ", ".join(failed) + " (see runs/NAME.failed.txt).", ""]
    damaged = [r["run"] for r, _, _ in rows if r["state"] == "damaged"]
    if damaged:
        lines += ["Damaged runs (result.json unreadable; left out): " + ", ".join(damaged)
                  + ". Delete a run's result.json and run the sweep again to re-derive it.", ""]
    waiting = [f"{r['run']} ({'not started' if r['state'] == 'new' else 'interrupted'})"
               for r, _, _ in rows if r["state"] in ("new", "partial")]
    if waiting:
        lines += ["Not finished: " + ", ".join(waiting) + "; run the same command again to "
                  "finish them.", ""]
    return lines


def _write_csv(rows: list, path: Path) -> None:
    import csv
    import io
    cols = []
    for r, _, _ in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    for r, _, _ in rows:
        w.writerow(r)
    atomic_write_text(path, buf.getvalue())


def _progress_panel(records: list[dict], nb201: bool, toy: bool) -> tuple[str, str]:
    """The figure of search progress beside the entropy: (record key, title)."""
    if nb201:
        return "benchmark", "NAS-Bench-201 CIFAR-10 accuracy of the argmax cell (%)"
    if toy:
        return "derived_loss", "test loss of the argmax architecture"
    if any("valid_acc" in r for r in records):
        return "valid_acc", "supernet validation accuracy (%)"
    return "valid_ppl", "supernet validation perplexity"  # a language model


def _sweep_figure(by_group, labels, path: Path, nb201: bool, toy: bool):
    """Median over seeds, per strategy, of the derived cell's NB201 CIFAR-10 accuracy and of
    the entropy over the search (AdvantageNAS Figure 2); the toy task: the test loss."""
    import statistics
    records = [r for items in by_group.values() for _, _, h in items for r in h]
    panels = [_progress_panel(records, nb201, toy),
              ("entropy", "architecture entropy (nats), median over seeds")]
    if any("hessian_eig" in r for r in records):
        panels.append(("hessian_eig", "dominant Hessian eigenvalue, median over seeds"))
        if any("skip_connects" in r for r in records):
            panels.append(("skip_connects", "skip connections in the derived cell, median"))
    series = False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels):
        for gi, (group, items) in enumerate(by_group.items()):
            curves = []
            for _, final, h in items:
                if key == "benchmark" and str((final or {}).get("derive", "")).startswith(
                        "rank-random"):
                    continue  # no argmax cell to follow: its cell is chosen at the end
                ys = []
                for r in h:
                    v = r.get(key)
                    if key == "benchmark":
                        v = (v or {}).get("cifar10")
                    ys.append(v if isinstance(v, (int, float)) else None)
                if any(y is not None for y in ys):
                    curves.append(ys)
            if not curves:
                continue
            # the epochs every seed has a figure for (evaluated every N epochs: those)
            n = min(len(c) for c in curves)
            xs = [i for i in range(n) if all(c[i] is not None for c in curves)]
            if not xs:
                continue
            med = [statistics.median(c[i] for c in curves) for i in xs]
            ax.plot([i + 1 for i in xs], med, label=labels.get(group, group), lw=1.4,
                    marker="o" if len(xs) < n / 2 else None, ms=3,
                    color=f"C{gi % 10}")  # a strategy's colour is the same in every panel
            series = True
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        if toy and key == "derived_loss":
            ax.set_yscale("symlog", linthresh=1e-4)
        epoch_axes(ax)
    best = max(axes, key=lambda ax: len(ax.get_legend_handles_labels()[0]))
    if best.get_legend_handles_labels()[0]:  # one legend, on the panel with the most lines
        best.legend(fontsize=7)
    fig.tight_layout()
    if not series:
        plt.close(fig)
        return None
    save(fig, path, dpi=110)
    plt.close(fig)
    return path.with_suffix(".png")
