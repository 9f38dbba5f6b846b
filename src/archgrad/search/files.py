"""A search's run-directory files: checkpoints checked against the configuration, the logs
(metrics.jsonl, metrics.csv, TensorBoard), the epoch line, and ``load_result``."""
from __future__ import annotations

from pathlib import Path

from ..errors import ArchgradError
from ..runs import schemas
from ..runs.rundir import atomic_write_text, write_jsonl
from .config import SearchConfig, SearchResult


def _probs_lists(arch) -> dict[str, list[list[float]]]:
    return {k: [[round(float(x), 6) for x in row] for row in v.cpu().tolist()]
            for k, v in arch.probs_detached().items()}


def _check_checkpoint(ckpt: dict, path: Path, cfg: SearchConfig, meta: dict,
                      saved_digest: str | None) -> None:
    if not isinstance(ckpt["epoch"], int) or not -1 <= ckpt["epoch"] < cfg.epochs or \
            not isinstance(ckpt["stage"], int) or not isinstance(ckpt["history"], list) or \
            not isinstance(ckpt["model"], dict) or not isinstance(ckpt["strategy"], dict):
        raise ArchgradError(f"{path} is damaged (its epoch, stage or state is not valid for "
                            f"this run)")
    if meta.get("run_id") is not None and ckpt.get("run_id") != meta.get("run_id"):
        raise ArchgradError(f"{path} belongs to another run (its run id is not the one in "
                            f"config.json); put back this run's checkpoint or start a new "
                            f"search")
    if ckpt.get("config_digest") is not None and saved_digest is not None and \
            ckpt["config_digest"] != saved_digest:
        raise ArchgradError(f"{path.parent / 'config.json'} was changed after the search "
                            f"started (it no longer matches checkpoint.pt); restore it, or "
                            f"start a new search with the new settings")


def _finished(cfg: SearchConfig, run_dir: Path, ckpt: dict, space) -> SearchResult:
    """A finished run, returned as it is (nothing is recomputed or written)."""
    path = run_dir / "result.json"
    try:
        final = schemas.read(path)
        geno = space.genotype((run_dir / "genotype.txt").read_text().strip())
    except (OSError, UnicodeDecodeError, ArchgradError) as e:
        raise ArchgradError(f"{path} or genotype.txt is damaged ({e}); remove them to "
                            f"re-derive the result from the last checkpoint") from None
    res = SearchResult(geno, list(ckpt["history"]), final, cfg, run_dir,
                       ckpt["history"][-1].get("probs", {}) if ckpt["history"] else {})
    res.already_finished = True
    return res


METRIC_COLUMNS = ("epoch", "stage", "lr", "train_loss", "train_acc", "arch_loss", "arch_acc",
                  "valid_loss", "valid_acc", "derived_loss", "entropy", "max_prob",
                  "skip_connects", "grad_var", "benchmark_cifar10", "benchmark_cifar100",
                  "benchmark_ImageNet16-120", "time_s", "genotype")


def _flat(record: dict) -> dict:
    out = dict(record)
    for k, v in (record.get("benchmark") or {}).items():
        out[f"benchmark_{k}"] = v
    return out


def _write_logs(run_dir: Path, history: list[dict], csv_too: bool) -> None:
    write_jsonl(run_dir / "metrics.jsonl", history)
    if csv_too:
        import csv
        import io
        buf = io.StringIO()
        cols = [c for c in METRIC_COLUMNS if any(c in _flat(r) for r in history)]
        w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in history:
            w.writerow({k: v for k, v in _flat(r).items() if k in cols})
        atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def _tensorboard(writer, record: dict) -> None:
    step = record["epoch"]
    for k, v in _flat(record).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
            writer.add_scalar(k.replace("benchmark_", "benchmark/"), v, step)
    writer.flush()


def _epoch_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}"]
    for k, fmt in (("train_loss", "{:.3f}"), ("train_acc", "{:.1f}%"), ("train_ppl", "{:.1f}"),
                   ("valid_acc", "{:.1f}%"), ("valid_ppl", "{:.1f}"), ("entropy", "{:.3f}")):
        if r.get(k) is not None:
            parts.append(f"{k} " + fmt.format(r[k]))
    if r.get("max_prob") is not None:
        parts[-1] += f" (max p {r['max_prob']:.2f})"
    if r.get("benchmark"):
        parts.append(f"nb201 cifar10 {r['benchmark']['cifar10']:.2f}%")
    parts.append(r["genotype"])
    return "  ".join(parts)


def load_result(run_dir: str | Path) -> dict:
    """The final result of a finished search run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "result.json").is_file():
        raise ArchgradError(f"{run_dir} has no result.json (the search has not finished; "
                            f"resume it with archgrad search --resume {run_dir})")
    return schemas.read(run_dir / "result.json")
