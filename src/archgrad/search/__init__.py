"""``search(...)``: run a strategy on a space and a dataset; write and resume run directories.

A run directory holds:

* ``config.json``   the resolved configuration (everything needed to rebuild the run);
* ``metrics.jsonl`` one JSON record per epoch (losses, accuracies, learning rate, architecture
  probabilities, entropy, derived genotype, benchmark figures, gradient-estimate variance);
* ``checkpoint.pt`` weights, architecture parameters, optimizer states, RNG states, epoch and the
  history so far, with a digest of its contents checked on load — written atomically after
  every epoch; the one it replaces stays as ``checkpoint.prev.pt`` (a fallback if it is damaged);
* ``genotype.txt`` / ``result.json`` when the search has finished.

``search(resume=RUN_DIR)`` continues from the last checkpoint; on CPU the result equals that of
an uninterrupted run with the same seed, bit for bit.

The package's layers: ``config`` (the configuration and its checks), ``plan`` (what a search
builds and whether it fits), ``loop`` (``search`` and the epoch loop), ``files`` (the run
directory's checkpoints and logs) and ``finish`` (the final evaluation and result.json).
"""
from .config import (
    AMP_DTYPES,
    BN_BATCHES,
    DEFAULT_EPOCHS,
    SearchConfig,
    SearchResult,
    check_search_kwargs,
    eval_generator,
    read_run_config,
    resolve_dataset,
    resolve_device,
    split_options,
    with_arch_defaults,
    with_space_defaults,
)
from .files import METRIC_COLUMNS, load_result
from .finish import _rank_random, best_valid_record
from .loop import DivergenceMonitor, search
from .plan import build_task, memory_need, plan_search

__all__ = ["AMP_DTYPES", "BN_BATCHES", "DEFAULT_EPOCHS", "DivergenceMonitor", "METRIC_COLUMNS",
           "SearchConfig", "SearchResult", "best_valid_record", "build_task",
           "check_search_kwargs", "eval_generator", "load_result", "memory_need", "plan_search",
           "read_run_config", "resolve_dataset", "resolve_device", "search", "split_options",
           "with_arch_defaults", "with_space_defaults", "_rank_random"]
