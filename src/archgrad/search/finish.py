"""The end of a search: the final genotype, the supernet and the derived cell evaluated with the
shared weights (the discretization gap), result.json and genotype.txt."""
from __future__ import annotations

import itertools
import sys
from typing import Any

import torch

from ..core.arch import entropy, max_prob
from ..core.bn import bn_modules, recalibrated
from ..runs.rundir import atomic_write_json, atomic_write_text
from .config import BN_BATCHES, SearchResult, eval_generator
from .files import _probs_lists


def _finish(cfg, run_dir, space, model, strategy, task, history, bench) -> SearchResult:
    dev = next(iter(model.state_dict().values())).device
    probs = strategy.arch.probs_detached()
    argmax_geno = strategy.derive(space)
    geno = argmax_geno
    final: dict[str, Any] = {}
    if strategy.rank_candidates:
        geno, final["ranking"] = _rank_random(space, model, strategy, task, dev)
    elif strategy.derive_mode.startswith("process-best"):
        pb = strategy.process_best()
        if pb is not None:
            geno = space.genotype_from_indices(pb)
    elif strategy.derive_mode == "best-valid":
        best = best_valid_record(history)
        if best is not None:
            geno = space.genotype(best["genotype"])
            final["best_valid_epoch"] = best["epoch"]
    elif strategy.derive_mode == "perturbation":  # DARTS-PT on the final supernet
        from ..core.selection import perturbation_select
        geno, final["perturbation"] = perturbation_select(
            space, model, strategy, task, tune_epochs=strategy.pt_options["pt_tune_epochs"],
            examples=strategy.pt_options["pt_examples"], seed=strategy.seed)
    if history and history[-1].get("stopped"):  # early stopping: its chosen architecture
        last = history[-1]
        geno = space.genotype(last["stop_genotype"])
        final.update(stopped=last["stopped"], stopped_after_epoch=last["epoch"],
                     stop_epoch=last.get("stop_epoch", last["epoch"]))
    if strategy.seen:  # sampling strategies: both forms of "process best", for the record
        for mode in ("process-best", "process-best-mean"):
            final[mode.replace("-", "_") + "_genotype"] = \
                str(space.genotype_from_indices(strategy.process_best(mode)))
    final.update({"genotype": str(geno), "derive": strategy.final_derive,
                  "argmax_genotype": str(argmax_geno), "epochs": cfg.epochs,
                  "entropy": entropy(probs), "max_prob": max_prob(probs)})
    final.update(space.report(model, geno))
    # discretization gap (SNAS Table 1): the derived architecture evaluated with the supernet's
    # shared weights, without retraining, beside the supernet itself; also with its BN statistics
    # recalibrated for it (no weights change), which separates the statistics' share of the gap
    last = max(cfg.epochs - 1, 0)
    sup = task.evaluate(model, strategy.estimator.eval_mix(
        strategy.arch, eval_generator(cfg.seed, last), last, cfg.epochs),
        bn=strategy.estimator.eval_bn)
    final["supernet_eval"] = strategy.estimator.describe_eval(
        bool(bn_modules(model)), getattr(task, "eval_batches", None))
    if getattr(task, "eval_split", None):
        final["eval_split"] = task.eval_split
    dmix = space.discrete_mix(geno, device=dev)
    disc = task.evaluate(model, dmix)
    with recalibrated(model, dmix, itertools.islice(task.weight_batches(0), BN_BATCHES)):
        disc_bn = task.evaluate(model, dmix)
    for k in sup:
        final[f"supernet_valid_{k}"] = sup[k]
        final[f"derived_valid_{k}"] = disc[k]
        final[f"derived_valid_{k}_bn"] = disc_bn[k]
    # the gap is positive when the derived architecture does worse than the supernet
    key = "acc" if "acc" in sup else "loss"
    sign = 1.0 if key == "acc" else -1.0
    final["discretization_gap"] = sign * (sup[key] - disc[key])
    final["discretization_gap_bn"] = sign * (sup[key] - disc_bn[key])
    final["gap_metric"] = key
    if bench is not None:
        final["benchmark"] = bench.summary(geno)
    final["search_time_s"] = round(sum(r.get("time_s", 0) for r in history), 2)
    final["peak_rss_mb"] = _peak_rss_mb()
    if dev.type == "cuda":
        final["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20, 1)
    result = SearchResult(geno, history, final, cfg, run_dir, _probs_lists(strategy.arch))
    if run_dir is not None:
        atomic_write_json(run_dir / "result.json", final)
        atomic_write_text(run_dir / "genotype.txt", str(geno) + "\n")
        try:
            from ..experiments.plot import draw
            draw(geno, run_dir / "cell", f"{cfg.strategy} on {cfg.space}/{cfg.dataset}")
        except Exception as e:  # a diagram must never cost the result
            atomic_write_text(run_dir / "cell.error.txt", f"{type(e).__name__}: {e}\n")
    return result


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory (MB): the search's when it runs in its own process
    (a sweep's runs do)."""
    try:
        import resource
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20, 1)
    except (ImportError, OSError):
        return None


def best_valid_record(history: list[dict]) -> dict | None:
    """The first epoch's record with the best supernet validation figure (accuracy, else
    minus the loss or perplexity; GAEA's train_search.py keeps the first strict best)."""
    def score(r):
        for k, sign in (("valid_acc", 1.0), ("valid_ppl", -1.0), ("valid_loss", -1.0)):
            if r.get(k) is not None:
                return sign * float(r[k])
        return None
    best, best_score = None, None
    for r in history:
        sc = score(r)
        if sc is not None and (best_score is None or sc > best_score):
            best, best_score = r, sc
    return best


def _rank_random(space, model, strategy, task, dev, top: int = 5, limit: int = 512):
    """Random search with weight sharing (Li & Talwalkar): rank K uniformly sampled
    architectures by their shared-weight validation score on a subset, re-score the best few on
    the whole validation split, return the best."""
    from ..core.sampling import uniform_indices
    gen = torch.Generator().manual_seed(strategy.seed + 7919)
    alive = {k: strategy.arch.alive(k) for k in strategy.arch.labels()}
    seen, cands = set(), []
    for _ in range(strategy.rank_candidates * 10):
        idx = uniform_indices(alive, gen)
        g = space.genotype_from_indices(idx)
        if str(g) not in seen:
            seen.add(str(g))
            cands.append(g)
        if len(cands) == strategy.rank_candidates:
            break

    def score(ev):
        return ev["acc"] if "acc" in ev else -ev["loss"]

    loader = task.validation_batches(strategy.seed + 7919) \
        if strategy.rank_selection == "one-batch" else None
    if loader is not None:
        # NAS-Bench-201's RSPS (RANDOM-NAS.py search_find_best): each cell on the next batch of
        # a shuffled pass over the validation split, eval mode, the first best kept
        scores, it, was = [], loader.epoch(0), model.training
        model.eval()
        with torch.no_grad():
            for g in cands:
                batch = next(it, None)
                if batch is None:
                    it = loader.epoch(len(scores))
                    batch = next(it)
                out = model(batch[0], space.discrete_mix(g, device=dev))
                scores.append(float((out.argmax(-1) == batch[1]).float().mean()) * 100.0)
        model.train(was)
        order = sorted(range(len(cands)), key=lambda i: (-scores[i], i))
        return cands[order[0]], {"candidates": len(cands), "selection": "one-batch",
                                 "top": [(str(cands[i]), scores[i]) for i in order[:top]]}

    def evaluate(g, lim, n_bn):
        mix = space.discrete_mix(g, device=dev)
        with recalibrated(model, mix, itertools.islice(task.weight_batches(0), n_bn)):
            return score(task.evaluate(model, mix, limit=lim))

    # BN statistics recalibrated for each candidate (a few batches for the first ranking)
    first = [(evaluate(g, limit, 2), i) for i, g in enumerate(cands)]
    first.sort(key=lambda t: (-t[0], t[1]))
    finals = [(evaluate(cands[i], None, BN_BATCHES), i) for _, i in first[:top]]
    finals.sort(key=lambda t: (-t[0], t[1]))
    best = cands[finals[0][1]]
    return best, {"candidates": len(cands), "top": [(str(cands[i]), s) for s, i in finals]}
