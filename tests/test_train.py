import pytest
import torch
from conftest import interrupt_training_after

import archgrad
from archgrad.runs.rundir import load_checkpoint

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
TINY = dict(C=4, N=1, batch_size=64, device="cpu")


def test_train_reports_test_accuracy_and_params(tmp_path):
    res = archgrad.train("nb201", BEST, "synthetic", epochs=3, lr=0.05, out=tmp_path / "t", **TINY)
    assert res["params"] == sum(p.numel() for p in archgrad.build(
        "nb201", BEST, C=4, N=1, num_classes=10).parameters())
    assert 0 <= res["test_acc"] <= 100
    assert res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]
    for f in ("train_config.json", "train_metrics.jsonl", "train_checkpoint.pt",
              "train_result.json", "model.pt"):
        assert (tmp_path / "t" / f).is_file(), f


def test_train_learns_digits():
    res = archgrad.train("nb201", BEST, "digits", epochs=4, lr=0.05, **TINY)
    assert res["test_acc"] > 60  # chance is 10%


def test_train_resume_equals_uninterrupted(tmp_path):
    full = archgrad.train("nb201", BEST, "synthetic", epochs=3, out=tmp_path / "a", **TINY)

    with interrupt_training_after(2), pytest.raises(KeyboardInterrupt):
        archgrad.train("nb201", BEST, "synthetic", epochs=3, out=tmp_path / "b", **TINY)
    resumed = archgrad.train(None, None, resume=tmp_path / "b")
    assert resumed["test_acc"] == full["test_acc"]
    a = load_checkpoint(tmp_path / "a/train_checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b/train_checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_training_option():
    with pytest.raises(archgrad.ArchgradError, match="training accepts"):
        archgrad.train("nb201", BEST, "synthetic", epochz=3)


def test_a_search_run_is_retrained_on_the_searchs_data_unless_told_otherwise(tmp_path, capsys):
    import json

    from conftest import run_cli
    s = archgrad.search(dataset="synthetic", epochs=1, out=tmp_path / "s", C=4, N=1,
                        device="cpu")
    cfg = lambda d: json.loads((d / "train_config.json").read_text())["train"]  # noqa: E731
    archgrad.train("nb201", str(s.run_dir), epochs=1, out=tmp_path / "a", **TINY)
    assert cfg(tmp_path / "a")["dataset"] == "synthetic"
    code, _, err = run_cli(capsys, "train", "--genotype", str(s.run_dir), "--epochs", "1",
                           "--channels", "4", "--cells", "1", "--quiet", "--out",
                           str(tmp_path / "b"))
    assert code == 0, err
    assert cfg(tmp_path / "b")["dataset"] == "synthetic"
    archgrad.train("nb201", str(s.run_dir), "digits", epochs=1, out=tmp_path / "c", **TINY)
    assert cfg(tmp_path / "c")["dataset"] == "digits"
