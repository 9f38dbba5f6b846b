import json
import subprocess
import sys

import pytest
from conftest import run_cli as run

from archgrad.core.ops import count_parameters
from archgrad.spaces import get_space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
TINY = ["--dataset", "synthetic", "--channels", "4", "--cells", "1", "--quiet", "--device", "cpu"]




@pytest.mark.parametrize("argv,needle", [
    (["search", "--space", "nb999"], "unknown space 'nb999'"),
    (["search", "--strategy", "dart"], "did you mean 'darts'"),
    (["search", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["search", "--epochs", "0"], "positive integer"),
    (["search", "--set", "arch_lr"], "KEY=VALUE"),
    (["search", "--set", "bogus=1"], "unknown option 'bogus'"),
    (["search", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "cifar-10-batches-py"),
    (["search", "--dataset", "imagefolder"], "needs --data-dir"),
    (["search", "--resume", "/nonexistent/run"], "no such directory"),
    (["search", "--resume", "/tmp", "--space", "nb201"], "drop --space"),
    (["search", "--device", "tpu"], "unknown device"),
    (["train", "--genotype", "|nor_conv_3x3~0|"], "malformed NAS-Bench-201 genotype"),
    (["train"], "needs a genotype"),
    (["info"], "needs a genotype"),
    (["draw", "--genotype", BEST, BEST + "x"], "two genotypes given"),
    (["train", "--genotype", "/nonexistent/dir/x"], "malformed"),
    (["lookup", "|bad|"], "malformed"),
    (["lookup", BEST, "--dataset", "svhn"], "unknown NAS-Bench-201 dataset"),
    (["info", "|nor_conv_3x3~0|+|x~0|"], "malformed"),
    (["list", "things"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_real_process_exit_status_and_no_traceback():
    p = subprocess.run([sys.executable, "-m", "archgrad", "search", "--space", "nope"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == ("archgrad: error: unknown space 'nope'; choose one of: "
                                + ", ".join(sorted(__import__("archgrad").list_spaces()))
                                + " (your own: name its module in $ARCHGRAD_PLUGINS)")


def test_search_json_resume_and_summary(capsys, tmp_path):
    run_dir = tmp_path / "r"
    code, out, err = run(capsys, "search", *TINY, "--epochs", "1", "--out", str(run_dir), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["genotype"].startswith("|") and "discretization_gap" in res
    code, out, _ = run(capsys, "search", "--resume", str(run_dir), "--quiet")
    assert code == 0 and "genotype (argmax)" in out and "NAS-Bench-201" in out
    code, out, _ = run(capsys, "lookup", str(run_dir), "--json")
    assert json.loads(out)["arch"] == res["genotype"]


def test_lookup_info_list(capsys):
    code, out, _ = run(capsys, "lookup", BEST)
    assert code == 0 and "94.37%" in out and "rank 1 of 15625" in out
    code, out, _ = run(capsys, "info", BEST, "--json")
    info = json.loads(out)
    assert info["params"] == 1_073_466 and info["flops"] == 153_272_960
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    assert "nb201" in data["spaces"] and "darts-2nd" in data["strategies"]
    assert "digits" in data["datasets"]
    code, out, _ = run(capsys, "list", "strategies")
    assert "arch_lr" in out


def test_train_from_a_run_directory(capsys, tmp_path):
    run_dir = tmp_path / "s"
    assert run(capsys, "search", *TINY, "--epochs", "1", "--out", str(run_dir))[0] == 0
    code, out, err = run(capsys, "train", "--genotype", str(run_dir), *TINY, "--epochs", "1",
                         "--out", str(tmp_path / "t"), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["genotype"] == (run_dir / "genotype.txt").read_text().strip()
    assert 0 <= res["test_acc"] <= 100 and res["params"] > 0


@pytest.mark.parametrize("cmd", ["search", "train", "lookup", "info", "list"])
def test_every_command_has_help(capsys, cmd):
    code, out, _ = run(capsys, cmd, "--help")
    assert code == 0 and "usage:" in out


@pytest.mark.slow
def test_compare_runs(capsys, tmp_path):
    for strat in ("darts", "gdas"):
        assert run(capsys, "search", *TINY, "--epochs", "1", "--strategy", strat,
                   "--out", str(tmp_path / strat))[0] == 0
    code, out, err = run(capsys, "compare", str(tmp_path / "darts"), str(tmp_path / "gdas"),
                         "--out", str(tmp_path / "cmp"), "--json")
    assert code == 0, err
    md = (tmp_path / "cmp.md").read_text()
    assert "| darts | darts | nb201 | synthetic |" in md and "| gdas | gdas |" in md
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    code, _, err = run(capsys, "compare", str(tmp_path / "nope"))
    assert code == 2 and "not a search run directory" in err
    # a sweep's directory stands for its runs
    sweep = tmp_path / "sw"
    code, _, err = run(capsys, "sweep", *TINY, "--epochs", "1", "--strategies", "darts", "gdas",
                       "--out", str(sweep))
    assert code == 0, err
    code, out, err = run(capsys, "compare", str(sweep), "--out", str(tmp_path / "c2"), "--json")
    assert code == 0 and json.loads(out)["runs"] == 2, err
    md = (tmp_path / "c2.md").read_text()
    assert "| darts-seed0 | darts |" in md and "| gdas-seed0 | gdas |" in md


@pytest.mark.parametrize("level", [1.6094379, 0.0, -3.25, 5200.0])
def test_per_epoch_panels_draw_a_flat_curve_flat_over_whole_epochs(level):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archgrad.experiments.plot import epoch_axes
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [level, level + abs(level) * 1e-7, level])
    epoch_axes(ax)
    lo, hi = ax.get_ylim()
    assert lo < level < hi and hi - lo >= 0.0099 * abs(level)
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    plt.close(fig)


def test_the_size_flags_help_names_what_they_set_on_every_space(capsys):
    """--channels / --cells map to different options per space; the help says which, for every
    shipped space that has them."""
    import re

    from archgrad.spaces import SPACES
    code, out, _ = run(capsys, "search", "--help")
    text = " ".join(out.split())
    for flag in ("channels", "cells"):
        m = re.search(rf"--{flag} {flag.upper()} (.*?) --", text)
        assert m, flag
        for name in SPACES:
            cls = SPACES.get(name)
            keys = {cls.search_flags.get(flag), cls.build_flags.get(flag)} - {None}
            if keys:
                assert f"{name} " in m.group(1), (flag, name)
                for key in keys:
                    for k in (key,) if isinstance(key, str) else key:
                        assert k in m.group(1), (flag, name, k)


@pytest.mark.parametrize("strategy,extra", [("darts", []), ("pcdarts", []),
                                            ("gdas", ["--set", "warmup_epochs=1"])])
def test_dry_run_plans_what_the_search_then_runs_and_writes_nothing(capsys, tmp_path,
                                                                    monkeypatch, strategy,
                                                                    extra):
    monkeypatch.chdir(tmp_path)
    argv = ["search", *TINY, "--strategy", strategy, "--epochs", "3", *extra]
    code, out, err = run(capsys, *argv, "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert list(tmp_path.iterdir()) == []  # nothing written
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0 and out.rstrip().endswith("nothing was run or written (--dry-run)")
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, *argv, "--out", "r")
    assert code == 0, err
    hist = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(h["steps"] == plan["steps_per_epoch"] for h in hist)
    assert plan["weight_steps"] == sum(h["steps"] for h in hist)
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["search"]
    assert plan["space_options"]["C"] == cfg["space_options"]["C"] == 4
    warm = {"darts": 0, "pcdarts": round(0.3 * 3), "gdas": 1}[strategy]
    assert plan["arch_steps"] == (3 - warm) * plan["steps_per_epoch"]
    assert plan["first_arch_epoch"] == warm + 1 and plan["memory_gb"] > 0


@pytest.mark.parametrize("command", ["train", "info", "export", "draw", "lookup"])
def test_every_command_takes_the_genotype_as_argument_or_flag(capsys, tmp_path, monkeypatch,
                                                              command):
    monkeypatch.chdir(tmp_path)
    extra = {"train": ["--dry-run", "--json", "--dataset", "synthetic"], "info": ["--json"],
             "export": ["--out", "m"], "draw": ["--out", "c"], "lookup": ["--json"]}[command]
    code, by_arg, err = run(capsys, command, BEST, *extra)
    assert code == 0, err
    for f in tmp_path.iterdir():
        f.unlink()
    code, by_flag, err = run(capsys, command, "--genotype", BEST, *extra)
    assert code == 0, err
    if command == "train":  # the memory available moves between two calls
        by_arg, by_flag = ({k: v for k, v in json.loads(o).items() if k != "available_gb"}
                           for o in (by_arg, by_flag))
    assert by_arg == by_flag
    code, _, err = run(capsys, command, BEST, "--genotype", BEST, *extra)  # the same twice
    assert code == 0, err


@pytest.mark.parametrize("space,genotype,extra", [
    ("nb201", BEST, ["--dataset", "synthetic", "--channels", "4", "--cells", "1"]),
    ("darts", "DARTS_V2", ["--dataset", "synthetic", "--channels", "4", "--cells", "3"]),
    ("darts-rnn", "DARTS_V2", ["--dataset", "synthetic-text", "--channels", "8",
                               "--cells", "2", "--set", "bptt=5", "--batch-size", "4"]),
])
def test_train_dry_run_plans_what_training_then_runs_and_writes_nothing(capsys, tmp_path,
                                                                        monkeypatch, space,
                                                                        genotype, extra):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--space", space, "--genotype", genotype, "--epochs", "1", "--quiet",
            *extra]
    code, out, err = run(capsys, *argv, "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    code, text, err = run(capsys, *argv, "--dry-run")
    assert code == 0 and text.rstrip().endswith("nothing was run or written (--dry-run)")
    assert f"{plan['params']:,} parameters" in text
    assert list(tmp_path.iterdir()) == []
    code, out, err = run(capsys, *argv, "--out", "r", "--json")
    assert code == 0, err
    res = json.loads(out)
    cfg = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert plan["params"] == res["params"] == cfg["params"]
    assert plan["recipe"] == cfg["recipe"] and plan["epochs"] == res["epochs"] == 1
    assert plan["memory_gb"] > 0 and plan["steps"] == plan["steps_per_epoch"] >= 1
    # the network options are those the network of the genotype is built with, resolved
    sp = get_space(space, **{k: v for k, v in plan["space_options"].items()})
    assert count_parameters(sp.build(genotype)) == plan["params"]
    assert not set(plan["space_options"]) & get_space(space).search_only
    assert "network options: " in text
    # what training refuses, the dry run refuses: here a directory that holds a run
    code, _, err = run(capsys, *argv, "--out", "r", "--dry-run")
    assert code == 2 and "already holds a training run" in err
    code, _, err = run(capsys, "train", "--resume", "r", "--dry-run")
    assert code == 2 and "drop --resume" in err


def test_dry_run_refuses_what_the_search_refuses(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "search", *TINY, "--set", "arch_lr=-1", "--dry-run")
    assert code == 2 and "arch_lr must be a number > 0" in err
    code, _, err = run(capsys, "search", "--resume", "x", "--dry-run")
    assert code == 2 and "--dry-run checks a new search; drop --resume" in err
    assert list(tmp_path.iterdir()) == []
