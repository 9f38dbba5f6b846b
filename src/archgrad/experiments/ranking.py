"""How well a supernet ranks cells (the question behind RobustDARTS's and DARTS-PT's critique of
the shared weights): sample K cells of a finished search's NAS-Bench-201 supernet (uniformly, or
from the search's own distribution), score each with the shared weights (the supernet with that
cell's one-hot mix, its batch-norm statistics recalibrated for the cell on training batches, no
weight changed) and compare the scores with the benchmark's accuracy of the same cells: Kendall's
tau and Spearman's rho (scipy's, tie-corrected tau-b), and the overlap of the top-k by either.

    archgrad rank RUN_DIR [--cells 50] [--sample uniform|distribution] [--out RUN_DIR/ranking]
"""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from ..errors import ArchgradError


def kendall_tau(x, y) -> float:
    """Kendall's tau-b between two sequences of scores (ties counted as scipy counts them)."""
    from scipy.stats import kendalltau
    return float(kendalltau(list(x), list(y))[0])


def spearman_rho(x, y) -> float:
    """Spearman's rank correlation (the Pearson correlation of the ranks, ties averaged)."""
    from scipy.stats import spearmanr
    return float(spearmanr(list(x), list(y))[0])


def top_k_overlap(x, y, k: int) -> float:
    """The share of the k items best by ``x`` that are among the k best by ``y`` (ties broken
    by position)."""
    x, y = list(x), list(y)
    k = min(k, len(x))
    if k < 1:
        return float("nan")
    best_x = set(sorted(range(len(x)), key=lambda i: (-x[i], i))[:k])
    best_y = set(sorted(range(len(y)), key=lambda i: (-y[i], i))[:k])
    return len(best_x & best_y) / k


def _load(run_dir: Path, data_dir, device):
    """The run's configuration, space, supernet with its trained weights, strategy and task."""
    from ..data import load_dataset
    from ..runs.rundir import load_checkpoint
    from ..search.config import read_run_config, resolve_device
    from ..search.plan import _planned_stages, _stage_space, build_task
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ArchgradError(f"{run_dir} is not a search run directory (no config.json)")
    cfg, _ = read_run_config(run_dir)
    if cfg.space != "nb201":
        raise ArchgradError(f"{run_dir} searched the '{cfg.space}' space; ranking against the "
                            f"ground truth needs NAS-Bench-201's table (space nb201)")
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise ArchgradError(f"{run_dir} has no checkpoint.pt yet (its first epoch has not "
                            f"ended): nothing to rank with")
    ckpt = load_checkpoint(path, required=("epoch", "stage", "model", "strategy"))
    dev = resolve_device(device)
    strategy, stages = _planned_stages(cfg)
    data = load_dataset(cfg.dataset, cfg.data_dir, cfg.subset)
    space = _stage_space(cfg, stages[ckpt["stage"]], data)
    model = space.supernet().to(dev)
    task = build_task(space, model, data, cfg, dev, strategy)
    strategy.setup(space.choices(), model, cfg.seed, dev,
                   costs=space.op_costs() if strategy.needs_costs else None)
    try:
        model.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ArchgradError(f"{path} does not fit the run's network ({str(e)[:120]})") from None
    return cfg, space, model, strategy, task, dev


def _sample_cells(space, strategy, n: int, how: str, seed: int) -> list:
    """Up to ``n`` distinct cells: uniformly over the candidates each edge still has, or drawn
    from the search's distribution (per edge, its probabilities)."""
    from ..core.sampling import sample_indices, uniform_indices
    gen = torch.Generator().manual_seed(seed)
    alive = {k: strategy.arch.alive(k) for k in strategy.arch.labels()}
    probs = strategy.arch.probs_detached()
    probs = {k: (p.clamp_min(0) * alive[k]).cpu() for k, p in probs.items()}
    seen, cells = set(), []
    for _ in range(50 * n):
        idx = uniform_indices(alive, gen) if how == "uniform" else sample_indices(probs, gen)
        g = space.genotype_from_indices(idx)
        if str(g) not in seen:
            seen.add(str(g))
            cells.append(g)
            if len(cells) == n:
                break
    return cells


def supernet_ranking(run_dir, cells: int = 50, sample: str = "uniform", seed: int = 0,
                     dataset: str = "cifar10", bn_batches: int = 10, top_k=(5, 10),
                     data_dir=None, device: str = "cpu") -> dict:
    """Score ``cells`` sampled cells with a finished (or checkpointed) NAS-Bench-201 search's
    shared weights and correlate the scores with the benchmark's test accuracy on
    ``dataset``. Returns the cells with their two figures, Kendall's tau, Spearman's rho and
    the top-k overlaps."""
    if sample not in ("uniform", "distribution"):
        raise ArchgradError(f"sample must be 'uniform' or 'distribution', got {sample!r}")
    if not isinstance(cells, int) or cells < 2:
        raise ArchgradError(f"cells must be an integer of at least 2, got {cells!r}")
    if not isinstance(bn_batches, int) or bn_batches < 0:
        raise ArchgradError(f"bn_batches must be a non-negative integer, got {bn_batches!r}")
    from ..benchmarks.nb201 import NB201Benchmark
    from ..core.bn import recalibrated
    bench = NB201Benchmark.load()
    ds = bench.dataset_name(dataset)
    cfg, space, model, strategy, task, dev = _load(run_dir, data_dir, device)
    chosen = _sample_cells(space, strategy, cells, sample, seed)
    if len(chosen) < 2:
        raise ArchgradError("fewer than 2 distinct cells to rank: the distribution is one-hot")
    rows = []
    for g in chosen:
        mix = space.discrete_mix(g, device=dev)
        with recalibrated(model, mix, itertools.islice(task.weight_batches(0), bn_batches)):
            ev = task.evaluate(model, mix)
        score = ev["acc"] if "acc" in ev else -ev["loss"]
        rows.append({"genotype": str(g), "shared_weights": score,
                     "benchmark": bench.query(g, ds, "test")})
    s = [r["shared_weights"] for r in rows]
    b = [r["benchmark"] for r in rows]
    return {"run_dir": str(run_dir), "cells": len(rows), "sample": sample, "seed": seed,
            "dataset": ds, "bn_batches": bn_batches, "kendall_tau": kendall_tau(s, b),
            "spearman_rho": spearman_rho(s, b),
            "top_k_overlap": {str(k): top_k_overlap(s, b, k) for k in top_k},
            "rows": rows}


def ranking_figure(res: dict, path: Path) -> Path:
    """A scatter of the shared-weight score against the benchmark's accuracy (PNG)."""
    from .plot import _plt
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.scatter([r["shared_weights"] for r in res["rows"]], [r["benchmark"] for r in res["rows"]],
               s=14, alpha=0.75)
    ax.set_xlabel("supernet, shared weights (valid acc %)")
    ax.set_ylabel(f"NAS-Bench-201 {res['dataset']} test acc (%)")
    ax.set_title(f"{res['cells']} cells ({res['sample']}): Kendall tau "
                 f"{res['kendall_tau']:.2f}, Spearman rho {res['spearman_rho']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path).with_suffix(".png")
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
