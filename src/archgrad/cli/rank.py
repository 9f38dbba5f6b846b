"""``archgrad rank``: how well a search's supernet ranks cells against NAS-Bench-201's table."""
from __future__ import annotations

from pathlib import Path

from .common import _nonneg, _path, _positive, _print_json, _seed


def add(sub) -> None:
    """The ``rank`` command's arguments."""
    rk = sub.add_parser("rank", help="how well a NAS-Bench-201 supernet ranks cells",
                        description="Sample cells, score each with the search's shared weights "
                        "(BN statistics recalibrated for the cell) and report Kendall's tau, "
                        "Spearman's rho and the top-k overlap against NAS-Bench-201's test "
                        "accuracy; writes OUT.json and a scatter plot OUT.png.")
    rk.add_argument("run", metavar="RUN_DIR", type=_path,
                    help="an nb201 search run directory (finished, or with a checkpoint)")
    rk.add_argument("--cells", type=_positive, default=50, help="cells to sample (50)")
    rk.add_argument("--sample", choices=["uniform", "distribution"], default="uniform",
                    help="uniformly over the candidates, or from the search's distribution")
    rk.add_argument("--dataset", default="cifar10",
                    help="the benchmark's dataset: cifar10, cifar100 or ImageNet16-120")
    rk.add_argument("--bn-batches", type=_nonneg, default=10,
                    help="training batches that recalibrate each cell's BN statistics (10)")
    rk.add_argument("--seed", type=_seed, default=0, help="seed of the sampled cells")
    rk.add_argument("--data-dir", type=_path, default=None, help="the run's data, if moved")
    rk.add_argument("--out", type=_path, default=None,
                    help="output path without suffix (default: RUN_DIR/ranking)")
    rk.add_argument("--json", action="store_true", help="print JSON")
    rk.set_defaults(func=cmd_rank)


def cmd_rank(args) -> int:
    from ..experiments.ranking import ranking_figure, supernet_ranking
    from ..runs.rundir import atomic_write_json, check_out_dir
    out = Path(args.out) if args.out else Path(args.run) / "ranking"
    check_out_dir(out.parent)
    res = supernet_ranking(args.run, cells=args.cells, sample=args.sample, seed=args.seed,
                           dataset=args.dataset, bn_batches=args.bn_batches,
                           data_dir=args.data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)  # after the checks and the ranking
    atomic_write_json(out.with_suffix(".json"), res)
    fig = ranking_figure(res, out)
    if args.json:
        _print_json({**res, "figure": str(fig)})
        return 0
    ov = ", ".join(f"top-{k} {v:.0%}" for k, v in res["top_k_overlap"].items())
    print(f"{res['cells']} cells ({res['sample']}), {res['dataset']}: Kendall tau "
          f"{res['kendall_tau']:.3f}, Spearman rho {res['spearman_rho']:.3f}; overlap {ov}")
    print(f"wrote {out.with_suffix('.json')} and {fig}")
    return 0
