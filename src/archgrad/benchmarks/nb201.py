"""NAS-Bench-201 ground truth, offline.

The package ships the benchmark's published figures for all 15625 architectures
(``data/nb201.csv.gz``; NATS-Bench topology results: 200-epoch accuracies averaged over seeds and
the 12-epoch schedule's). Query by genotype; ranks and percentiles are among all 15625.
"""
from __future__ import annotations

import csv
import gzip
import io
from functools import lru_cache
from importlib import resources

import numpy as np

from ..errors import ArchgradError, UnknownNameError

# dataset -> metric name -> column. "test"/"valid"/"train" are the 200-epoch figures.
COLUMNS: dict[str, dict[str, str]] = {
    "cifar10": {"test": "cifar10_test", "test_12ep": "cifar10_test_12ep"},
    "cifar10-valid": {"valid": "cifar10_valid_valid", "test": "cifar10_valid_test",
                      "train": "cifar10_valid_train", "valid_12ep": "cifar10_valid_valid_12ep"},
    "cifar100": {"test": "cifar100_test", "test_12ep": "cifar100_test_12ep",
                 "valid_12ep": "cifar100_valid_12ep"},
    "ImageNet16-120": {"test": "imagenet16_120_test", "test_12ep": "imagenet16_120_test_12ep",
                       "valid_12ep": "imagenet16_120_valid_12ep"},
}
ALIASES = {"cifar10": "cifar10", "cifar10-valid": "cifar10-valid", "cifar100": "cifar100",
           "imagenet16-120": "ImageNet16-120", "imagenet16": "ImageNet16-120",
           "imagenet": "ImageNet16-120"}
#: the metric whose rank a lookup reports, per dataset
RANKED = {"cifar10": "test", "cifar10-valid": "valid", "cifar100": "test",
          "ImageNet16-120": "test"}


class NB201Benchmark:
    """``query(genotype, dataset, metric)`` over NAS-Bench-201's table."""

    name = "nas-bench-201"

    def __init__(self, arch_strs: list[str], index: np.ndarray, table: dict[str, np.ndarray]):
        self.arch_strs = arch_strs
        self.bench_index = index
        self.table = table
        self._row = {a: i for i, a in enumerate(arch_strs)}
        self._sorted = {k: np.sort(v) for k, v in table.items()}

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls) -> "NB201Benchmark":
        raw = resources.files("archgrad.benchmarks").joinpath("data/nb201.csv.gz").read_bytes()
        reader = csv.DictReader(io.StringIO(gzip.decompress(raw).decode()))
        rows = list(reader)
        cols = [c for c in reader.fieldnames if c not in ("index", "arch_str")]
        table = {c: np.array([float(r[c]) for r in rows]) for c in cols}
        return cls([r["arch_str"] for r in rows], np.array([int(r["index"]) for r in rows]),
                   table)

    def __len__(self) -> int:
        return len(self.arch_strs)

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def dataset_name(dataset: str) -> str:
        key = ALIASES.get(str(dataset).lower())
        if key is None:
            raise UnknownNameError("NAS-Bench-201 dataset", dataset, COLUMNS)
        return key

    def _row_of(self, genotype) -> int:
        s = str(genotype).strip()
        try:
            return self._row[s]
        except KeyError:
            from ..spaces.nb201 import NB201Genotype
            NB201Genotype.parse(s)  # raises a GenotypeError for a malformed string
            raise ArchgradError(f"architecture {s} is not in the NAS-Bench-201 table") from None

    def query(self, genotype, dataset: str = "cifar10", metric: str = "test") -> float:
        ds = self.dataset_name(dataset)
        if metric not in COLUMNS[ds]:
            raise UnknownNameError(f"NAS-Bench-201 metric for {ds}", metric, COLUMNS[ds])
        return float(self.table[COLUMNS[ds][metric]][self._row_of(genotype)])

    def rank(self, genotype, dataset: str = "cifar10", metric: str | None = None) -> int:
        """1 + the number of architectures with a strictly higher figure (1 = best)."""
        ds = self.dataset_name(dataset)
        col = COLUMNS[ds][metric or RANKED[ds]]
        v = self.table[col][self._row_of(genotype)]
        s = self._sorted[col]
        return int(len(s) - np.searchsorted(s, v, side="right")) + 1

    def percentile(self, genotype, dataset: str = "cifar10", metric: str | None = None) -> float:
        """Percentage of all architectures whose figure is at most this one's (best = 100)."""
        ds = self.dataset_name(dataset)
        col = COLUMNS[ds][metric or RANKED[ds]]
        v = self.table[col][self._row_of(genotype)]
        return 100.0 * float(np.searchsorted(self._sorted[col], v, side="right")) / len(self)

    def lookup(self, genotype, dataset: str = "cifar10") -> dict:
        """Every figure of one dataset for ``genotype``, with its rank and percentile."""
        ds = self.dataset_name(dataset)
        row = self._row_of(genotype)
        out = {"arch": self.arch_strs[row], "index": int(self.bench_index[row]), "dataset": ds}
        out.update({m: float(self.table[c][row]) for m, c in COLUMNS[ds].items()})
        out["ranked_by"] = RANKED[ds]
        out["rank"] = self.rank(genotype, ds)
        out["percentile"] = round(self.percentile(genotype, ds), 4)
        out["of"] = len(self)
        return out

    def summary(self, genotype) -> dict:
        """The figures a search records every epoch: test accuracy on each dataset and the
        CIFAR-10 rank."""
        row = self._row_of(genotype)
        return {"cifar10": float(self.table["cifar10_test"][row]),
                "cifar100": float(self.table["cifar100_test"][row]),
                "ImageNet16-120": float(self.table["imagenet16_120_test"][row]),
                "cifar10_rank": self.rank(genotype, "cifar10")}

    def best(self, dataset: str = "cifar10", metric: str | None = None) -> tuple[str, float]:
        ds = self.dataset_name(dataset)
        col = COLUMNS[ds][metric or RANKED[ds]]
        i = int(np.argmax(self.table[col]))
        return self.arch_strs[i], float(self.table[col][i])
