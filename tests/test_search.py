import json

import pytest
import torch

import archgrad
from archgrad.core.strategy import Strategy
from archgrad.methods import STRATEGIES
from archgrad.runs.rundir import load_checkpoint

TINY = dict(dataset="synthetic", C=4, N=1, batch_size=32, device="cpu")


class Interrupt(Exception):
    pass


def _stop_after_epoch(n):
    def cb(record, live):
        if record["epoch"] == n:
            raise KeyboardInterrupt
    return cb


def _state_equal(a, b):
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k


def _strip(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_resume_equals_uninterrupted(strategy, tmp_path):
    epochs = max(2, archgrad.get_strategy(strategy).min_epochs)
    full = archgrad.search(strategy=strategy, epochs=epochs, out=tmp_path / "full", **TINY)
    with pytest.raises(KeyboardInterrupt):
        archgrad.search(strategy=strategy, epochs=epochs, out=tmp_path / "cut", **TINY,
                        callbacks=[_stop_after_epoch(1)])
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = archgrad.search(resume=tmp_path / "cut")
    assert str(resumed.genotype) == str(full.genotype)
    assert _strip(resumed.history) == _strip(full.history)
    a, b = load_checkpoint(tmp_path / "full/checkpoint.pt"), load_checkpoint(tmp_path / "cut/checkpoint.pt")
    _state_equal(a["model"], b["model"])
    _state_equal(a["strategy"], b["strategy"])
    assert {k: v for k, v in resumed.final.items() if k not in ("search_time_s", "peak_rss_mb")} == \
        {k: v for k, v in full.final.items() if k not in ("search_time_s", "peak_rss_mb")}


def test_interrupted_mid_epoch_leaves_a_resumable_directory(tmp_path, monkeypatch):
    full = archgrad.search(epochs=2, out=tmp_path / "full", **TINY)
    calls = {"n": 0}
    real = Strategy.step

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 10:  # in the middle of the second epoch (8 steps per epoch)
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Strategy, "step", flaky)
    with pytest.raises(KeyboardInterrupt):
        archgrad.search(epochs=2, out=tmp_path / "cut", **TINY)
    monkeypatch.setattr(Strategy, "step", real)
    run = tmp_path / "cut"
    assert not list(run.glob(".*tmp")), "temporary files left behind"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = archgrad.search(resume=run)
    assert _strip(resumed.history) == _strip(full.history)


def test_run_directory_contents(tmp_path):
    res = archgrad.search(epochs=2, out=tmp_path / "r", **TINY)
    run = tmp_path / "r"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["search"]["strategy"] == "darts" and cfg["search"]["epochs"] == 2
    assert cfg["search"]["space_options"] == {"C": 4, "N": 1}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("train_loss", "train_acc", "arch_loss", "arch_acc", "valid_acc", "lr",
                  "entropy", "genotype", "probs", "benchmark", "grad_var"):
            assert k in r, k
        assert len(r["probs"]["cell"]) == 6 and len(r["probs"]["cell"][0]) == 5
        assert 0 < r["benchmark"]["cifar10"] <= 100
        assert 0 <= r["entropy"] <= torch.log(torch.tensor(5.0)).item() + 1e-6
    assert (run / "genotype.txt").read_text().strip() == str(res.genotype)
    final = json.loads((run / "result.json").read_text())
    for k in ("supernet_valid_acc", "derived_valid_acc", "discretization_gap", "benchmark"):
        assert k in final
    ck = load_checkpoint(run / "checkpoint.pt")
    assert set(ck) >= {"epoch", "model", "strategy", "history", "rng"}
    assert "arch.theta.cell" in ck["strategy"]


def test_same_seed_repeats_and_other_seed_differs():
    a = archgrad.search(epochs=1, **TINY)
    b = archgrad.search(epochs=1, **TINY)
    c = archgrad.search(epochs=1, seed=1, **TINY)
    assert a.probs == b.probs
    assert a.probs != c.probs


def test_learning_rate_is_cosine_annealed():
    res = archgrad.search(epochs=3, lr=0.1, lr_min=0.01, **TINY)
    lrs = [r["lr"] for r in res.history]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[1] == pytest.approx(0.01 + 0.09 * (1 + torch.cos(torch.tensor(torch.pi / 3)).item()) / 2)


def test_warmup_freezes_the_architecture():
    res = archgrad.search(epochs=2, warmup_epochs=1, **TINY)
    first = res.history[0]
    assert "arch_loss" not in first
    assert "arch_loss" in res.history[1]


def test_existing_run_directory_is_not_overwritten(tmp_path):
    archgrad.search(epochs=1, out=tmp_path / "r", **TINY)
    with pytest.raises(archgrad.ArchgradError, match="--resume"):
        archgrad.search(epochs=1, out=tmp_path / "r", **TINY)


def test_options_route_to_space_or_strategy():
    with pytest.raises(archgrad.ArchgradError, match="unknown option 'bogus'"):
        archgrad.search(epochs=1, bogus=1, **TINY)
