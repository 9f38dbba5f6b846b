"""Protocols, configuration files, sweeps and reports (archgrad reproduce / sweep / report)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli as run

import archgrad
from archgrad.cli import main
from archgrad.errors import ArchgradError
from archgrad.protocols import SCALES, load, names


# ---- protocols ----------------------------------------------------------------------------------
def test_the_shipped_protocols_are_listed_with_their_sources(capsys):
    for n in ("advantagenas-nb201", "advantagenas-toy", "nb201-darts-family", "gaea-nb201"):
        assert n in names()
    code, out, _ = run(capsys, "reproduce", "--list")
    assert code == 0
    for n in names():
        assert f"{n}: " in out
    assert "source: Sato, Sakuma & Akimoto" in out


@pytest.mark.parametrize("name", names())
def test_listing_one_protocol_shows_it_alone_with_its_scales(capsys, name):
    code, out, _ = run(capsys, "reproduce", "--list", name)
    assert code == 0
    assert out.startswith(f"{name}: ") and not any(
        f"{n}: " in out for n in names() if n != name and not n.startswith(name))
    p = load(name)
    assert p.description.split()[0] in out
    for k, v in p.scale.items():
        assert f"scale {k}: {' '.join(v['note'].split())}" in out  # on one line


@pytest.mark.parametrize("name", names() + ["quickstart"])
def test_show_prints_a_file_that_loads_as_the_same_protocol(capsys, tmp_path, name):
    code, out, err = run(capsys, "reproduce", name, "--show")
    assert code == 0, err
    mine = tmp_path / "mine.toml"
    mine.write_text(out)
    a, b = load(name), load(mine)
    assert (a.name, a.strategies, a.seeds, a.search, a.options, a.published) == \
        (b.name, b.strategies, b.seeds, b.search, b.options, b.published)
    assert sorted(a.scale) == sorted(b.scale)
    code, _, err = run(capsys, "reproduce", "nope", "--show")
    assert code == 2 and "unknown protocol or configuration 'nope'" in err


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("scale", SCALES)
def test_every_protocol_parses_and_validates_at_every_scale(name, scale):
    from archgrad.search import check_search_kwargs
    p = load(name)
    if scale != "full" and scale not in p.scale:
        pytest.skip(f"{name} has no {scale} scale")
    q = p.at_scale(scale)
    assert q.strategies and q.seeds and q.title and q.source
    for s in q.strategies:
        cfg = check_search_kwargs(**q.search_kwargs(s, q.seeds[0]))
        assert cfg.strategy == s
    for mode, figures in q.published.items():
        if isinstance(figures, dict):
            assert set(figures) <= set(q.strategies), (mode, figures)


def test_advantagenas_protocol_holds_the_papers_settings():
    p = load("advantagenas-nb201")
    kw = p.search_kwargs("advantage", 0)
    assert kw["epochs"] == 100 and kw["batch_size"] == 64 and kw["dataset"] == "cifar10"
    assert kw["space_options"] == {"include_none": False, "C": 16, "N": 5}
    o = kw["strategy_options"]
    assert o["lr"] == 0.1 and o["nesterov"] and o["weight_decay"] == 5e-4 and o["grad_clip"] == 1
    assert o["arch_lr"] == 3e-4 and o["arch_lr_schedule"] == "cosine"
    assert o["arch_betas"] == [0.5, 0.999] and o["arch_weight_decay"] == 3e-3
    assert o["warmup_epochs"] == 0.5 and o["init_scale"] == 0.0
    assert p.published["argmax"]["advantage"] == 93.76
    assert p.published["process-best"]["reinforce"] == 92.69
    assert "proxyless" not in p.published["process-best"]  # never evaluates a one-hot cell
    st = archgrad.get_strategy("proxyless", **p.search_kwargs("proxyless")["strategy_options"])
    assert st.arch_every == 1


BAD_FILES = [
    ('[search]\nspace = "nb201"\nbogus = 1\n', "search.bogus is not a search setting"),
    ('[search]\nepochs = "ten"\n', "search.epochs must be an integer"),
    ('wat = 1\n', "wat is not a known key"),
    ('[options]\narch_lr = "abc"\n', "arch_lr must be a number > 0"),
    ('[options]\nbogus_option = 1\n', "options.bogus_option is not an option of darts"),
    ('[space]\nC = -1\n', "option C must be an integer >= 1"),
    ('strategies = ["dartz"]\n', "unknown strategy 'dartz'"),
    ('[scale.huge]\nnote = "x"\n', "scale.huge is not a scale"),
    ('seeds = [-1]\n', "seeds must list integers >= 0"),
    ('[search\n', "is not valid TOML"),
    ('[published]\nargmax = 5\n', "published.argmax must be a table of strategy = figure"),
    ('[published.argmax]\ndarts = "x"\n', "published.argmax.darts must be a number"),
    ('[published]\nbogus = 1\n', "published.bogus is not a published setting"),
    ('[published]\nsource = 3\n', "published.source must be a string"),
    ('[labels]\ndarts = 5\n', "labels.darts must be a string"),
    ('[search]\namp = "fp8"\n', "--amp must be one of bf16, fp16"),
    ('[search]\nsync_bn = 1\n', "search.sync_bn must be true or false, got 1"),
    ('seeds = []\n', "seeds is empty: list at least one"),
    ('strategies = []\n', "strategies is empty: list at least one"),
    ('seeds = [0, 0]\n', "seeds lists 0 twice"),
    ('strategies = ["darts", "darts"]\n', "strategies lists 'darts' twice"),
    ('strategies = ["darts"]\n[search]\nstrategy = "gdas"\n',
     "search.strategy 'gdas' is not among strategies (darts)"),
    ('seeds = [0, 1]\n[search]\nseed = 3\n', "search.seed 3 is not among seeds [0, 1]"),
    ('[train]\nbogus = 1\n', "train.bogus is not a training option"),  # whichever command
    ('[retrain]\nepochs = "x"\n', "retrain.epochs: training option epochs must be"),
]


@pytest.mark.parametrize("text,needle", BAD_FILES)
def test_a_sweep_refuses_a_bad_configuration_file_before_making_anything(capsys, tmp_path, text,
                                                                          needle):
    _bad_file_is_refused(capsys, tmp_path, text, needle, "sweep", "--dataset", "synthetic")


@pytest.mark.slow
def test_a_grid_over_spaces_sizes_each_run_for_its_space_and_reports_each(capsys, tmp_path):
    out = tmp_path / "sw"
    code, _, err = run(capsys, "sweep", "--grid", "space=nb201,darts", "--channels", "4",
                       "--cells", "3", "--dataset", "synthetic", "--subset", "64", "--epochs",
                       "1", "--quiet", "--out", str(out))
    assert code == 0, err
    cfg = {d.name: json.loads((d / "config.json").read_text())["search"]
           for d in (out / "runs").iterdir()}
    # --cells is N (cells per stage) on nb201 and layers (cells in all) on darts
    assert cfg["darts-space=nb201-seed0"]["space_options"]["N"] == 3
    assert cfg["darts-space=darts-seed0"]["space_options"]["layers"] == 3
    assert "N" not in cfg["darts-space=darts-seed0"]["space_options"]
    report = (out / "report.md").read_text()
    nb201 = report.split("## argmax")[1].split("##")[0]
    assert "darts space=nb201 | 1 |" in nb201 and "space=darts" not in nb201
    supernet = report.split("## Supernet")[1].split("##")[0]
    assert "darts space=nb201 | 1 |" in supernet and "darts space=darts | 1 |" in supernet


def test_a_sweep_refuses_a_search_that_cannot_fit_before_making_anything(capsys, tmp_path):
    for dry in ([], ["--dry-run"]):
        _bad_file_is_refused(capsys, tmp_path, "[space]\nC = 100000\nN = 1\n", "needs about",
                             "sweep", "--dataset", "synthetic", *dry)


def test_a_configuration_file_sets_mixed_precision(capsys, tmp_path):
    f = tmp_path / "amp.toml"
    f.write_text('[search]\namp = "bf16"\nepochs = 1\ndataset = "synthetic"\n[space]\nC = 4\n'
                 'N = 1\n')
    code, _, err = run(capsys, "search", "--config", str(f), "--quiet", "--out",
                       str(tmp_path / "r"))
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["search"]["amp"] == "bf16"


def _bad_file_is_refused(capsys, tmp_path, text, needle, *argv):
    """``argv`` with a configuration file of ``text`` ends in one line holding ``needle``, exit
    status 2, and no run directory."""
    f = tmp_path / "bad.toml"
    f.write_text(text)
    code, out, err = run(capsys, *argv, "--config", str(f), "--quiet", "--out",
                         str(tmp_path / "r"))
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text,needle", BAD_FILES)
def test_a_bad_configuration_file_gives_one_line_naming_the_file_and_key(capsys, tmp_path, text,
                                                                        needle):
    _bad_file_is_refused(capsys, tmp_path, text, needle, "search", "--dataset", "synthetic")

G = 'genotype = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|' \
    'nor_conv_1x1~2|"\n'
BAD_TRAIN_FILES = [
    ("[train]\n" + G + 'epochs = "x"\n', "train.epochs: training option epochs must be"),
    ("[train]\n" + G + "bogus = 1\n", "train.bogus is not a training option of space 'nb201'"),
    ("[train]\ngenotype = 5\n", "train.genotype must be a string, got 5"),
    ("[train]\n" + G + 'space = "nope"\n', "train.space: unknown space 'nope'"),
    ("[train]\n" + G + "lr = -1\n", "train.lr: training option lr must be a number > 0"),
    ("[train]\nepochs = 1\n", 'or genotype = "..." in the [train] table of'),
    ("[search]\nepochs = 1\n", "has no [train] table"),
]


@pytest.mark.parametrize("text,needle", BAD_TRAIN_FILES)
def test_a_bad_train_table_gives_one_line_naming_the_file_and_key(capsys, tmp_path, text,
                                                                 needle):
    _bad_file_is_refused(capsys, tmp_path, text, needle, "train")


def test_search_and_train_take_the_same_configuration_format(capsys, tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text("""
[search]
space = "nb201"
strategy = "gdas"
dataset = "synthetic"
epochs = 2
batch_size = 32

[space]
C = 4
N = 1

[options]
arch_lr = 1e-3
tau_max = 5.0

[train]
genotype = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
dataset = "synthetic"
epochs = 1
lr = 0.05
""")
    code, out, err = run(capsys, "search", "--config", str(f), "--quiet", "--out",
                         str(tmp_path / "s"), "--set", "tau_max=8")
    assert code == 0, err
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())["search"]
    assert cfg["strategy"] == "gdas" and cfg["epochs"] == 2 and cfg["batch_size"] == 32
    assert cfg["strategy_options"]["arch_lr"] == 1e-3
    assert cfg["strategy_options"]["tau_max"] == 8  # the flag beside the file wins
    assert cfg["space_options"]["C"] == 4
    code, out, err = run(capsys, "train", "--config", str(f), "--quiet", "--out",
                         str(tmp_path / "t"), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["epochs"] == 1 and res["params"] > 0
    tcfg = json.loads((tmp_path / "t" / "train_config.json").read_text())
    assert tcfg["recipe"]["lr"] == 0.05 and tcfg["train"]["space_options"]["C"] == 4


# ---- reproduce, sweeps, reports ---------------------------------------------------------------
@pytest.mark.slow
def test_reproduce_tiny_writes_the_report_and_a_second_run_reruns_nothing(capsys, tmp_path):
    out = tmp_path / "rep"
    t0 = time.time()
    code, o, err = run(capsys, "reproduce", "advantagenas-nb201", "--scale", "tiny", "--seeds",
                       "0", "--out", str(out), "--quiet", "--workers", "2")
    assert code == 0, err
    first = time.time() - t0
    md = (out / "report.md").read_text()
    for label in ("REINFORCE", "PARSEC", "ProxylessNAS", "GDAS", "AdvantageNAS"):
        assert f"| {label} | 1 |" in md, label
    assert "| 93.76 |" in md and "| 92.69 |" in md and "published (cifar10)" in md
    assert "## process-best" in md and "## Search cost" in md
    assert (out / "report.png").is_file()
    rows = (out / "report.csv").read_text().splitlines()
    assert len(rows) == 1 + 5 and "argmax_cifar10" in rows[0]
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    t0 = time.time()
    code, o, err = run(capsys, "reproduce", "advantagenas-nb201", "--scale", "tiny", "--seeds",
                       "0", "--out", str(out), "--quiet")
    assert code == 0 and "nothing left to run" in o, (o, err)
    assert time.time() - t0 < max(5.0, first / 4)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == mtimes
    code, _, err = run(capsys, "reproduce", "advantagenas-nb201", "--scale", "tiny", "--seeds",
                       "1", "--out", str(out), "--quiet")
    assert code == 2 and "holds another sweep" in err


def _report_rows(path: Path) -> list[dict]:
    import csv
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        r.pop("search_time_s", None)
        r.pop("peak_rss_mb", None)
    return rows


@pytest.mark.slow
def test_a_sweep_killed_with_kill_9_ends_with_the_same_report(tmp_path):
    args = ["sweep", "--strategies", "darts", "gdas", "--seeds", "0", "1", "--dataset",
            "synthetic", "--channels", "4", "--cells", "1", "--epochs", "3", "--batch-size",
            "32", "--device", "cpu", "--quiet", "--workers", "2"]
    full = tmp_path / "full"
    assert main(args + ["--out", str(full)]) == 0
    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "-m", "archgrad", *args, "--out", str(cut)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None and not \
            list((cut / "runs").glob("*/checkpoint.pt")):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.5)  # the workers die with it (PR_SET_PDEATHSIG)
    assert main(args + ["--out", str(cut)]) == 0
    assert _report_rows(cut / "report.csv") == _report_rows(full / "report.csv")


@pytest.mark.slow
def test_a_grid_over_option_values_and_a_partial_report(capsys, tmp_path):
    out = tmp_path / "g"
    code, o, err = run(capsys, "sweep", "--strategies", "darts", "--seeds", "0", "--grid",
                       "arch_lr=1e-3,1e-2", "--dataset", "synthetic", "--channels", "4",
                       "--cells", "1", "--epochs", "1", "--quiet", "--out", str(out))
    assert code == 0, err
    runs = sorted(p.name for p in (out / "runs").iterdir() if p.is_dir())
    assert runs == ["darts-arch_lr=0.001-seed0", "darts-arch_lr=0.01-seed0"]
    lrs = {json.loads((out / "runs" / r / "config.json").read_text())["search"]
           ["strategy_options"]["arch_lr"] for r in runs}
    assert lrs == {1e-3, 1e-2}
    # a partial report: one run's result removed
    (out / "runs" / runs[0] / "result.json").unlink()
    code, o, err = run(capsys, "report", str(out))
    assert code == 0 and "(1 of 2 runs finished)" in o, err
    text = (out / "report.md").read_text()
    assert "a partial report" in text
    assert f"Not finished: {runs[0]} (interrupted)" in text
    # a damaged result is named and left out, not read as a finished run
    (out / "runs" / runs[1] / "result.json").write_text("{}")
    code, o, err = run(capsys, "report", str(out))
    assert code == 0 and "(0 of 2 runs finished)" in o, err
    assert f"Damaged runs (result.json unreadable; left out): {runs[1]}" in \
        (out / "report.md").read_text()


@pytest.mark.parametrize("grid,want", [
    (["ops=none,skip_connect;skip_connect,nor_conv_3x3"],
     [{"ops": "none,skip_connect"}, {"ops": "skip_connect,nor_conv_3x3"}]),
    (["ops=none,skip_connect"], [{"ops": "none,skip_connect"}]),  # one list, not two ops
    (["arch_betas=0.5,0.999;0.9,0.999"], [{"arch_betas": [0.5, 0.999]},
                                          {"arch_betas": [0.9, 0.999]}]),
    (["strategy.arch_betas=0.5,0.999"], [{"strategy.arch_betas": [0.5, 0.999]}]),
    (["arch_lr=1e-3,1e-2"], [{"arch_lr": 1e-3}, {"arch_lr": 1e-2}]),
    (["arch_lr=1e-3;1e-2"], [{"arch_lr": 1e-3}, {"arch_lr": 1e-2}]),
])
def test_grid_values_of_list_options_are_separated_by_semicolons(capsys, tmp_path, monkeypatch,
                                                                 grid, want):
    import archgrad.sweep as S
    seen = {}

    def capture(runs, out, meta, **kw):
        seen["runs"] = runs
        return {"sweep": str(out), "runs": len(runs), "done": 0, "ran": [], "failed": [],
                "report": None}

    monkeypatch.setattr(S, "run_grid", capture)
    args = ["sweep", "--strategies", "darts", "--dataset", "synthetic", "--quiet", "--out",
            str(tmp_path / "s")]
    for g in grid:
        args += ["--grid", g]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    assert [json.loads(json.dumps(r.values)) for r in seen["runs"]] == want


def test_grid_values_that_differ_past_a_long_prefix_keep_their_own_run_names():
    from archgrad.experiments.sweep import grid
    ops = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
           "dil_conv_3x3", "dil_conv_5x5"]
    runs = grid({"space": "darts"}, ["darts"], [0], {"ops": [ops, ops + ["none"]]})
    names = [r.name for r in runs]
    assert len(set(names)) == 2 and all(len(n) < 100 for n in names)
    assert names == [r.name for r in grid({"space": "darts"}, ["darts"], [0],
                                          {"ops": [ops, ops + ["none"]]})]  # stable
    with pytest.raises(ArchgradError, match="lists run darts-arch_lr=0.001-seed0 twice"):
        grid({}, ["darts"], [0], {"arch_lr": [0.001, 0.001]})
    with pytest.raises(ArchgradError, match="lists run darts-seed0 twice"):
        grid({}, ["darts", "darts"], [0])


@pytest.mark.slow
def test_a_configuration_of_one_search_reproduces_as_a_grid_of_one(capsys, tmp_path):
    f = tmp_path / "one.toml"
    f.write_text('[search]\nstrategy = "gdas"\nseed = 3\nepochs = 1\ndataset = "synthetic"\n'
                 '[space]\nC = 4\nN = 1\n')
    code, out, err = run(capsys, "reproduce", str(f), "--out", str(tmp_path / "s"), "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "s" / "runs").iterdir()) == ["gdas-seed3"]
    assert "1 of 1 runs finished" in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.slow
def test_a_sweep_over_a_configuration_takes_its_strategies_seeds_and_their_settings(
        capsys, tmp_path):
    f = tmp_path / "two.toml"
    f.write_text('strategies = ["darts", "gdas"]\nseeds = [4]\n[search]\nepochs = 1\n'
                 'dataset = "synthetic"\n[space]\nC = 4\nN = 1\n[strategy.gdas]\n'
                 'tau_min = 0.5\n')
    code, out, err = run(capsys, "sweep", "--config", str(f), "--out", str(tmp_path / "s"),
                         "--quiet")
    assert code == 0, err
    runs = tmp_path / "s" / "runs"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["darts-seed4", "gdas-seed4"]
    opts = json.loads((runs / "gdas-seed4" / "config.json").read_text())["search"]
    assert opts["strategy_options"]["tau_min"] == 0.5 and opts["seed"] == 4
    # a file of one search: its strategy and its seed
    f = tmp_path / "one.toml"
    f.write_text('[search]\nstrategy = "gdas"\nseed = 3\nepochs = 1\ndataset = "synthetic"\n'
                 '[space]\nC = 4\nN = 1\n')
    code, out, err = run(capsys, "sweep", "--config", str(f), "--out", str(tmp_path / "o"),
                         "--quiet")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "o" / "runs").iterdir() if p.is_dir()] == ["gdas-seed3"]


@pytest.mark.slow
def test_a_second_process_on_a_running_sweep_is_refused(capsys, tmp_path):
    from archgrad.runs.rundir import RunLock
    argv = ["reproduce", "advantagenas-toy", "--scale", "tiny", "--seeds", "0", "--strategies",
            "darts", "--out", str(tmp_path / "s"), "--quiet"]
    (tmp_path / "s").mkdir()
    with RunLock(tmp_path / "s"):     # as a sweep running in another process holds it
        code, _, err = run(capsys, *argv)
    assert code == 2 and "is in use by another archgrad process" in err, err
    assert [p.name for p in (tmp_path / "s").iterdir()] == [".lock"]
    code, _, err = run(capsys, *argv)   # released: the sweep runs
    assert code == 0, err


def test_an_interrupted_sweep_says_how_to_finish_it(capsys, tmp_path, monkeypatch):
    from archgrad.experiments.sweep import Sweep

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt("SIGTERM")
    monkeypatch.setattr(Sweep, "run", interrupted)
    out = tmp_path / "s"
    code, _, err = run(capsys, "sweep", "--dataset", "synthetic", "--epochs", "1", "--out",
                       str(out), "--quiet")
    assert code == 143
    assert err.strip() == (f"archgrad: terminated; {out} keeps its finished runs: run the same "
                           f"command with --out {out} to finish it")


@pytest.mark.slow
def test_sweeps_and_reproductions_from_python(tmp_path):
    res = archgrad.run_sweep(["darts", "gdas"], [0, 1], {"arch_lr": [1e-3, 1e-2]},
                             dataset="synthetic", C=4, N=1, epochs=1, out=tmp_path / "sw")
    assert res["runs"] == res["done"] == 8 and not res["failed"]
    assert res["sweep"] == str(tmp_path / "sw") and Path(res["report"]).is_file()
    assert "arch_lr" in Path(res["csv"]).read_text().splitlines()[0]
    rep = archgrad.reproduce("advantagenas-toy", "tiny", seeds=[0], strategies=["darts"],
                             out=tmp_path / "rp")
    assert rep["done"] == rep["runs"] == 1 and rep["ran"] == ["darts-seed0"]
    again = archgrad.reproduce("advantagenas-toy", "tiny", seeds=[0], strategies=["darts"],
                               out=tmp_path / "rp")
    assert again["ran"] == [] and again["done"] == 1
    with pytest.raises(archgrad.ArchgradError, match="workers must be a positive integer"):
        archgrad.run_sweep(["darts"], workers=0, out=tmp_path / "no")
    assert not (tmp_path / "no").exists()


def test_a_worker_killed_by_sigkill_is_a_failed_run_that_says_why(capsys, tmp_path,
                                                                   monkeypatch):
    from archgrad.experiments.sweep import Sweep

    def start(self, spec, device, threads):  # a search the out-of-memory killer ends
        return subprocess.Popen([sys.executable, "-c",
                                 "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    monkeypatch.setattr(Sweep, "_start", start)
    out = tmp_path / "s"
    code, o, err = run(capsys, "sweep", "--dataset", "synthetic", "--epochs", "1", "--out",
                       str(out), "--quiet")
    assert code == 1 and "failed: darts-seed0" in o, (o, err)
    why = (out / "runs" / "darts-seed0.failed.txt").read_text()
    assert "killed (SIGKILL), most likely out of memory" in why and "--retry-failed" in why


def test_bad_sweeps_are_refused_before_anything_runs(capsys, tmp_path):
    code, _, err = run(capsys, "sweep", "--strategies", "darts", "--grid", "arch_lr=1e-3,-1",
                       "--dataset", "synthetic", "--out", str(tmp_path / "s"), "--quiet")
    assert code == 2 and "arch_lr must be a number > 0" in err
    assert not (tmp_path / "s").exists()
    code, _, err = run(capsys, "reproduce", "advantagenas-nb201", "--strategies", "darts",
                       "--out", str(tmp_path / "r"))
    assert code == 2 and "not darts" in err
    code, _, err = run(capsys, "reproduce", "nope")
    assert code == 2 and "unknown protocol or configuration 'nope'" in err
    code, _, err = run(capsys, "reproduce", "advantagenas-nb201", "--scale", "tiny",
                       "--data-dir", "/nonexistent", "--out", str(tmp_path / "c"), "--dry-run")
    assert code == 0, err  # tiny runs on synthetic data: no dataset is needed
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_the_toy_protocol_reports_figure_1(capsys, tmp_path):
    out = tmp_path / "toy"
    code, o, err = run(capsys, "reproduce", "advantagenas-toy", "--scale", "tiny", "--out",
                       str(out), "--quiet", "--strategies", "darts", "advantage")
    assert code == 0, err
    md = (out / "report.md").read_text()
    assert "Recovering the teacher" in md and "| DARTS | 2 |" in md and "| AdvantageNAS | 2 |" in md


@pytest.mark.slow
@pytest.mark.parametrize("name,strategies", [("darts-rnn", ["darts"]),
                                             ("advantagenas-ptb", ["advantage", "gdas"])])
def test_the_ptb_protocols_search_retrain_and_report_perplexities(capsys, tmp_path, name,
                                                                  strategies):
    """The tiny scale runs out of the box, on the generated corpus (no files needed)."""
    out = tmp_path / name
    code, o, err = run(capsys, "reproduce", name, "--scale", "tiny", "--out", str(out),
                       "--quiet", "--workers", "1", "--strategies", *strategies)
    assert code == 0, err
    cfg = json.loads((out / "runs" / f"{strategies[0]}-seed0" / "config.json").read_text())
    assert cfg["search"]["dataset"] == "synthetic-text"
    for s in strategies:
        res = json.loads((out / "runs" / f"{s}-seed0" / "retrain" / "train_result.json")
                         .read_text())
        assert res["test_ppl"] > 1 and res["test_batch_size"] == 1
        assert res["genotype"] == (out / "runs" / f"{s}-seed0" / "genotype.txt").read_text() \
            .strip()
    md = (out / "report.md").read_text()
    assert "Found architectures trained from scratch" in md and "published (valid / test)" in md
    p = load(name)
    for s in strategies:
        label = p.labels.get(s, s)
        pv, pt = p.published["valid"][s], p.published["test"][s]
        assert f"| {label} | 1 |" in md and f"{pv:.2f} / {pt:.2f}" in md
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} | 1 |"))
        assert "±" not in row  # one run has a mean, no standard deviation
    # the figure follows the supernet's perplexity (there is no accuracy to follow)
    from archgrad.experiments.report import _progress_panel
    hist = [json.loads(x) for x in (out / "runs" / f"{strategies[0]}-seed0" / "metrics.jsonl")
            .read_text().splitlines()]
    key = _progress_panel(hist, False, False)[0]
    assert key == "valid_ppl" and all(r[key] > 1 for r in hist if key in r)
    assert (out / "report.png").is_file()


@pytest.mark.slow
def test_the_darts_cifar10_protocol_trains_each_found_cell_and_reports_test_accuracy(capsys,
                                                                                    tmp_path):
    out = tmp_path / "dc"
    code, o, err = run(capsys, "reproduce", "darts-cifar10", "--scale", "tiny", "--out", str(out),
                       "--quiet", "--strategies", "darts")
    assert code == 0, err
    res = json.loads((out / "runs" / "darts-seed0" / "retrain" / "train_result.json").read_text())
    assert res["space"] == "darts" and 0 <= res["test_acc"] <= 100
    assert res["genotype"] == (out / "runs" / "darts-seed0" / "genotype.txt").read_text().strip()
    md = (out / "report.md").read_text()
    # an image network's training has no validation figure: test accuracy beside the paper's
    assert "| strategy | runs | test accuracy (%) | published (test) |" in md
    assert f"| DARTS (first order) | 1 | {res['test_acc']:.2f} | 97.00 |" in md


def test_the_argmax_row_of_a_ranking_strategy_is_its_own_derivation(capsys, tmp_path):
    """RSPS has no distribution (it stays uniform, whose argmax is the first op everywhere):
    the report's argmax row takes the cell its ranking chose."""
    import csv

    from archgrad.benchmarks.nb201 import NB201Benchmark
    out = tmp_path / "fam"
    code, o, err = run(capsys, "reproduce", "nb201-darts-family", "--scale", "tiny", "--seeds",
                       "0", "--strategies", "random-ws", "--out", str(out), "--quiet")
    assert code == 0, err
    result = json.loads(next((out / "runs").glob("random-ws*/result.json")).read_text())
    assert result["derive"] == "rank-random (one-batch)"  # NAS-Bench-201's own selection
    assert result["genotype"] != result["argmax_genotype"]
    row = next(csv.DictReader((out / "report.csv").open()))
    want = NB201Benchmark.load().query(result["genotype"], "cifar10", "test")
    assert float(row["argmax_cifar10"]) == pytest.approx(want)
    assert "own derivation" in (out / "report.md").read_text()


@pytest.mark.slow
def test_too_many_workers_for_the_memory_are_refused_before_anything_starts(capsys, tmp_path,
                                                                           monkeypatch):
    import archgrad.memory as M

    from archgrad.experiments.sweep import grid
    from archgrad.search import check_search_kwargs, memory_need
    base = dict(space="nb201", dataset="synthetic", C=4, N=1, epochs=1, device="cpu")
    runs = grid(base, ["darts", "gdas"], [0, 1])
    need = memory_need(check_search_kwargs(**runs[0].kwargs), None, "cpu")
    monkeypatch.setattr(M, "available_bytes", lambda device="cpu": int(need * 1.5))
    args = ["sweep", "--strategies", "darts", "gdas", "--seeds", "0", "1", "--dataset",
            "synthetic", "--channels", "4", "--cells", "1", "--epochs", "1", "--device", "cpu",
            "--quiet", "--out", str(tmp_path / "s")]
    code, _, err = run(capsys, *args, "--workers", "3")
    assert code == 2 and "3 workers on cpu may run searches needing about" in err, err
    assert "at most 1 at once fit there: use --workers 1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()
    monkeypatch.setattr(M, "available_bytes", lambda device="cpu": int(need * 3.5))
    code, _, err = run(capsys, *args, "--workers", "3")
    assert code == 0, err


@pytest.mark.slow
def test_a_darts_sweep_reports_the_derived_cells_skips_and_size(capsys, tmp_path):
    import statistics
    out = tmp_path / "d"
    code, _, err = run(capsys, "sweep", "--space", "darts", "--strategies", "darts", "--seeds",
                       "0", "1", "--dataset", "synthetic", "--epochs", "1", "--channels", "4",
                       "--cells", "3", "--quiet", "--out", str(out))
    assert code == 0, err
    finals = [json.loads((out / "runs" / f"darts-seed{s}" / "result.json").read_text())
              for s in (0, 1)]
    skips = [f["skip_connects"] for f in finals]
    params = [f["eval_params"] / 1e6 for f in finals]
    row = next(line for line in (out / "report.md").read_text().splitlines()
               if line.startswith("| darts | 2 |"))
    assert f"| {statistics.fmean(skips):.2f} ± {statistics.stdev(skips):.2f} |" in row
    assert f"| {statistics.fmean(params):.2f} ± {statistics.stdev(params):.2f} |" in row


def test_a_sweep_or_run_given_where_the_other_is_expected_says_what_to_give(capsys, tmp_path):
    sw = tmp_path / "sw"
    (sw / "runs" / "darts-seed0").mkdir(parents=True)
    (sw / "sweep.json").write_text("{}")
    for argv in (["draw", str(sw)], ["lookup", str(sw)], ["info", str(sw)],
                 ["train", "--genotype", str(sw)]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and f"{sw} is a sweep; name one of its runs, e.g. " \
            f"{sw / 'runs' / 'darts-seed0'}" in err, (argv, err)
    code, _, err = run(capsys, "search", "--resume", str(sw))
    assert code == 2 and "it is a sweep (run the same archgrad sweep or reproduce" in err
    r = tmp_path / "r"
    r.mkdir()
    (r / "config.json").write_text("{}")
    code, _, err = run(capsys, "report", str(r))
    assert code == 2 and "it is a search run (archgrad compare compares runs)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "sw"]


@pytest.mark.slow
def test_a_dry_run_lists_the_runs_and_their_states_and_writes_nothing(capsys, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sw"
    argv = ["sweep", "--strategies", "darts", "gdas", "--seeds", "0", "--dataset", "synthetic",
            "--epochs", "1", "--channels", "4", "--cells", "1", "--quiet", "--out", str(out)]
    code, o, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    assert "2 runs, 2 to run (2 new)" in o and "darts-seed0  new" in o
    assert o.rstrip().endswith("nothing was run or written (--dry-run)")
    assert list(tmp_path.iterdir()) == []
    assert run(capsys, *argv)[0] == 0
    (out / "runs" / "gdas-seed0" / "result.json").unlink()     # as if interrupted
    code, o, err = run(capsys, *argv, "--dry-run", "--json")
    assert code == 0, err
    res = json.loads(o)
    assert res["states"] == {"darts-seed0": "done", "gdas-seed0": "partial"}
    assert res["to_run"] == 1 and not (out / "runs" / "gdas-seed0" / "result.json").exists()
    code, _, err = run(capsys, *argv[:-2], "--out", str(out), "--seeds", "0", "1", "--dry-run")
    assert code == 2 and "holds another sweep" in err
    code, _, err = run(capsys, "reproduce", "advantagenas-nb201", "--scale", "tiny", "--seeds",
                       "0", "--dry-run")
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["sw"]
    res = archgrad.run_sweep(["darts"], [0, 1], dataset="synthetic", epochs=1, C=4, N=1,
                             out=tmp_path / "api", dry_run=True)
    assert res["runs"] == 2 and not (tmp_path / "api").exists()


@pytest.mark.slow
def test_reproduce_nb201_robust_tiny_reports_every_method_on_the_three_datasets(capsys,
                                                                                tmp_path):
    out = tmp_path / "robust"
    code, o, err = run(capsys, "reproduce", "nb201-robust", "--scale", "tiny", "--seeds", "0",
                       "--out", str(out), "--quiet", "--workers", "2")
    assert code == 0, err
    md = (out / "report.md").read_text()
    for label in ("DARTS (1st)", "DrNAS", "SDARTS-RS", "SDARTS-ADV", "FairDARTS", "DARTS-",
                  "beta-DARTS", "Lambda-DARTS", "OLES"):
        assert f"| {label} | 1 |" in md, label
    assert "NB201 cifar100 (%)" in md and "NB201 ImageNet16-120 (%)" in md
    assert "| 94.36 |" in md and "| 93.80 |" in md and "transfers the" in md


@pytest.mark.slow
def test_reproduce_collapse_tiny_records_the_eigenvalue_and_stops_darts_es(capsys, tmp_path):
    out = tmp_path / "collapse"
    code, o, err = run(capsys, "reproduce", "collapse", "--scale", "tiny", "--seeds", "0",
                       "--out", str(out), "--quiet", "--workers", "2")
    assert code == 0, err
    md = (out / "report.md").read_text()
    for label in ("DARTS (1st)", "DARTS-ES", "DARTS-PT", "DrNAS", "beta-DARTS"):
        assert f"| {label} | 1 |" in md, label
    runs = out / "runs"
    hist = [json.loads(line) for line in (runs / "darts-seed0" / "metrics.jsonl").open()]
    assert len(hist) == 3 and all("hessian_eig" in h and "skip_connects" in h for h in hist)
    es = json.loads((runs / "darts-es-seed0" / "result.json").read_text())
    # the eigenvalue grows by about 15% an epoch here, over the tiny scale's 1% factor
    assert es["stopped"].startswith("eigenvalue") and es["stop_epoch"] == 1
    pt = json.loads((runs / "darts-pt-seed0" / "result.json").read_text())
    assert pt["derive"] == "perturbation" and len(pt["perturbation"]["decisions"]) == 6
    assert (out / "report.png").is_file()
