"""Trustworthy runs: bad input, damaged or foreign run files, interruptions at every point of
the write sequence (kill -9 included), locks, divergence, and what the output says."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli as run

import archgrad
from archgrad.errors import ArchgradError
from archgrad.runs.rundir import RunLock, load_checkpoint
from archgrad.spaces import SPACES, get_space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
TINY = ["--dataset", "synthetic", "--channels", "4", "--cells", "1", "--quiet", "--device", "cpu",
        "--epochs", "1"]
KW = dict(dataset="synthetic", C=4, N=1, batch_size=32, device="cpu")
# a DARTS genotype longer than a file name may be (it is tried as a run directory first)
LONG_DARTS = ("Genotype(normal=[('dil_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_5x5', 2), "
              "('skip_connect', 0), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3), ('sep_conv_3x3', 4), "
              "('avg_pool_3x3', 0)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_3x3', 1), "
              "('sep_conv_5x5', 0), ('sep_conv_5x5', 0), ('skip_connect', 2), ('dil_conv_5x5', 0), "
              "('avg_pool_3x3', 1), ('skip_connect', 2), ('dil_conv_3x3', 1)], "
              "reduce_concat=[2, 3, 4, 5])")
V2_BAD_OP = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_cnv_3x3', 1)], normal_concat=[2], "
             "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])")
V2_BAD_INPUT = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 5)], normal_concat=[2], "
                "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])")




# ---- bad input: one line, exit 2, nothing created ---------------------------------------------
BAD = [
    (["search", "--seed", "99999999999999999999999"], "seed in [0, 4294967295]"),
    (["search", "--seed", "-1"], "seed in"),
    (["search", "--set", "arch_lr=abc"], "arch_lr must be a number > 0, got 'abc'"),
    (["search", "--set", "arch_lr=-1"], "arch_lr must be a number > 0"),
    (["search", "--set", "lr=nan"], "lr must be a number > 0"),
    (["search", "--set", "lr=inf"], "lr must be a number > 0"),
    (["search", "--set", "momentum=2"], "momentum must be a number in [0"),
    (["search", "--set", "arch_betas=0.5"], "arch_betas must be 2 numbers"),
    (["search", "--set", "arch_every=0"], "arch_every must be an integer >= 1"),
    (["search", "--set", "derive=best"], "derive must be one of argmax"),
    (["search", "--set", "fused=maybe"], "fused must be true or false"),
    (["search", "--set", "C=4", "--channels", "16"], "C is given twice"),
    (["search", "--set", "warmup_epochs=5", "--epochs", "5"], "leaves no epoch"),
    (["search", "--set", "ops=a,b"], "ops must be distinct names among"),
    (["search", "--set", "include_none=3"], "include_none must be true or false"),
    (["search", "--strategy", "random-ws", "--set", "candidates=0"], "candidates must be an integer"),
    (["search", "--strategy", "gdas", "--set", "tau_min=20"], "tau_min must not exceed tau_max"),
    (["search", "--strategy", "snas", "--set", "resource_weight=extreme"], "resource_weight"),
    (["search", "--set", "bogus=1"], "unknown option 'bogus'"),
    (["search", "--set", "=1"], "KEY=VALUE"),
    (["search", "--epochs", "0"], "positive integer"),
    (["search", "--batch-size", "-3"], "positive integer"),
    (["search", "--subset", "1"], "--subset must be an integer of at least 2"),
    (["search", "--channels", "100000", "--dataset", "synthetic"], "GB available"),
    (["search", "--space", "darts", "--cells", "2"], "at least 3"),
    (["search", "--space", "advantagenas-rnn", "--dataset", "ptb", "--set", "nhid=-5"],
     "option nhid must be an integer in [1, "),
    (["search", "--space", "advantagenas-rnn", "--dataset", "ptb", "--set", "nodes=0"],
     "option nodes must be an integer in [1, 32]"),
    (["search", "--space", "darts-rnn", "--dataset", "ptb", "--set", "vocab_size=1"],
     "option vocab_size must be an integer in [2, "),
    (["search", "--space", "toy", "--dataset", "digits"], "generates its own data"),
    (["search", "--strategy", "pdarts", "--epochs", "2"], "at least 3 epochs"),
    (["search", "--device", "tpu"], "unknown device"),
    (["search", "--device", "cuda"] if not torch.cuda.is_available() else ["search", "--device",
                                                                           "tpu"],
     "no CUDA device" if not torch.cuda.is_available() else "unknown device"),
    (["search", "--out", "afile"], "is a file, not a directory"),
    (["search", "--out", "/proc/archgrad-test/x"], "cannot create the run directory"),
    (["search", "--resume", "nowhere"], "no such directory"),
    (["search", "--resume", "somedir", "--space", "darts"], "drop --space"),
    (["search", "--resume", "somedir", "--amp", "bf16"], "drop --amp"),
    (["search", "--resume", "somedir", "--sync-bn"], "drop --sync-bn"),
    (["train", "--resume", "somedir", "--amp", "fp16"], "drop --amp"),
    (["train", "--genotype", BEST, "--lr", "-1"], "expected a finite number > 0"),
    (["train", "--genotype", BEST, "--set", "epochs=0"], "epochs must be an integer"),
    (["train", "--genotype", BEST, "--set", "drop_path=2"], "drop_path must be a number in"),
    (["train", "--genotype", "|nor_conv_3x3~0|"], "malformed NAS-Bench-201 genotype"),
    (["train", "--genotype", "DARTS_V2"], "genotype of the darts and darts-rnn spaces, not of "
                                          "nb201: give --space darts"),
    (["train", "--genotype", LONG_DARTS], "genotype of the darts space, not of nb201: give "
                                          "--space darts"),
    (["lookup", LONG_DARTS], "genotype of the darts space, which has no benchmark table"),
    (["info", LONG_DARTS, "--space", "darts", "--channels", "100000"], "more than the"),
    (["export", "DARTS_V2", "--space", "advantagenas-rnn"], "genotype of the darts and "
                                                            "darts-rnn spaces, not of"),
    (["info", "|tanh~0|+|tanh~0|tanh~1|+|tanh~0|tanh~1|tanh~2|", "--space", "advantagenas-rnn",
      "--channels", "100000"], "more than the"),
    (["search", "--set", "N=100000"], "option N must be an integer in [1, 100]"),
    (["search", "--out", "a" * 300], "a name in the path is 300 bytes long, more than the 255"),
    (["compare", "x/" + "a" * 300], "more than the 255 a file name may have"),
    (["train", "--config", "a" * 5000], "more than the 4096 a path may have"),
    (["search", "--space", "darts", "--strategy", "pdarts", "--set", "stage_depths=3,4"],
     "one depth per stage"),
    (["search", "--space", "darts", "--strategy", "pdarts", "--cells", "95"],
     "the last stage would have layers=107"),
    (["info", "ENAS", "--space", "darts"], "genotype of the darts-rnn space, not of darts: "
                                           "give --space darts-rnn"),
    (["info", "0,1,2,3,4,5,6,7,8,9", "--space", "toy", "--image-size", "8"], "--set image_size=8, not"),
    (["search", "--space", "advantagenas-rnn", "--dataset", "synthetic-text", "--channels", "8"],
     "256 sequences of 11 tokens gives no step: a step takes two windows (weights, then θ)"),
    (["train", "--space", "darts-rnn", "--genotype", "DARTS_V2", "--dataset", "synthetic-text",
      "--batch-size", "1400", "--channels", "8"], "1400 sequences of 2 tokens gives no step"),
    (["info", "DARTS_V2", "--space", "darts-rnn", "--image-size", "8"],
     "--image-size applies to image networks; space 'darts-rnn' is a language model"),
    (["export", "DARTS_V2", "--space", "darts-rnn", "--image-size", "8", "--out", "m"],
     "--image-size applies to image networks"),
    (["train", "--genotype", "somedir"], "not a search run directory"),
    (["train", "--space", "toy", "--genotype", "1,2,3"], "no training task"),
    (["train", "--space", "darts-rnn", "--genotype", "DARTS_V2", "--dataset", "ptb",
      "--sync-bn"], "sync_bn applies to image networks only"),
    (["train", "--space", "darts-rnn", "--genotype", "DARTS_V2", "--dataset", "ptb", "--set",
      "cutout=16"], "cutout applies to image networks only"),
    (["train", "--genotype", BEST, "--set", "bptt=35"], "bptt applies to the recurrent"),
    (["lookup", ""], "got an empty string"),
    (["lookup", "|bad|"], "malformed"),
    (["lookup", BEST, "--dataset", "svhn"], "unknown NAS-Bench-201 dataset"),
    (["info", BEST, "--image-size", "1"], "cannot run with this configuration"),
    (["info", BEST, "--image-size", "100000"], "GB available"),
    (["info", V2_BAD_OP, "--space", "darts"], "unknown DARTS op 'sep_cnv_3x3' at normal entry 1"),
    (["info", V2_BAD_INPUT, "--space", "darts"], "node 2 cannot take input 5"),
    (["info", "DARTS_V3", "--space", "darts"], "malformed DARTS genotype"),
    (["draw", "|x|"], "malformed"),
    (["draw", BEST, "--out", "/proc/cell"], "cannot write /proc/cell.png"),
    (["draw", BEST, "--out", "afile/cell"], "cannot write afile/cell.png"),
    (["export", BEST, "--out", "/proc/model"], "cannot write /proc/model.pt"),
    (["search", "--out", ""], "expected a path, got an empty string"),
    (["train", "--genotype", BEST, "--resume", " "], "expected a path"),
    (["sweep", "--devices", "cuda:0", "--out", "sw"], "no CUDA device is available"),
    (["sweep", "--devices", "tpu"], "unknown device 'tpu'"),
    (["sweep", "--grid", "seed=1,2"], "give the seeds to sweep with --seeds"),
    (["sweep", "--grid", "strategy=darts,gdas"], "give the strategies to sweep with --strategies"),
    (["sweep", "--grid", "arch_lr=1e-3", "--grid", "arch_lr=1e-2"],
     "--grid arch_lr is given twice"),
    (["sweep", "--grid", "=1,2"], "--grid expects KEY=V1,V2,..., got '=1,2'"),
    (["sweep", "--grid", "lr=0.1,0.2", "--set", "lr=0.3"],
     "lr is both swept (--grid lr=...) and fixed (--set lr); give it once"),
    (["sweep", "--grid", "C=4,8", "--channels", "4"],
     "C is both swept (--grid C=...) and fixed (--channels)"),
    (["sweep", "--grid", "space.N=1,2", "--cells", "1"], "and fixed (--cells)"),
    (["sweep", "--grid", "epochs=1,2", "--epochs", "3"], "and fixed (--epochs)"),
    (["sweep", "--devices", ","], "--devices needs at least one device"),
    (["reproduce", "advantagenas-toy", "--scale", "tiny", "--devices", "cuda:0"],
     "no CUDA device is available"),
    (["compare", "nowhere"], "no such path"),
    (["list", "things"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(capsys, tmp_path, monkeypatch, argv,
                                                          needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "somedir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/ directory made
    assert not list((tmp_path / "somedir").iterdir())


API_BAD = [
    (lambda: archgrad.search(out=5), "out must be a path"),
    (lambda: archgrad.search(resume=[1]), "resume must be a path"),
    (lambda: archgrad.train("nb201", BEST, out=3.5), "out must be a path"),
    (lambda: archgrad.search(out="r/" + "a" * 300), "out: a name in the path is 300 bytes"),
    (lambda: archgrad.train("nb201", "a" * 300), "malformed NAS-Bench-201 genotype"),
    (lambda: archgrad.search(epochs="3"), "epochs must be a positive integer"),
    (lambda: archgrad.search(seed="a"), "seed must be an integer"),
    (lambda: archgrad.search(dataset=5), "unknown dataset '5'"),
    (lambda: archgrad.build("nb201", None), "expected a NAS-Bench-201 genotype"),
    (lambda: archgrad.build("darts", "DARTS_V9"), "malformed DARTS genotype"),
    (lambda: archgrad.supernet("nb201", C=-1), "option C must be an integer >= 1"),
    (lambda: archgrad.get_strategy("darts-2nd", xi=-1), "option xi must be a number >= 0"),
    (lambda: archgrad.lookup(None), "malformed NAS-Bench-201 genotype"),
]


@pytest.mark.parametrize("call,needle", API_BAD, ids=[n for _, n in API_BAD])
def test_the_python_api_refuses_bad_input_with_an_archgrad_error(tmp_path, monkeypatch, call,
                                                                  needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArchgradError, match=needle):
        call()
    assert not list(tmp_path.iterdir())


def test_ambiguous_option_is_routed_or_explained(capsys, tmp_path):
    # partial_channels: PC-DARTS passes it to the space, so it is not ambiguous
    code, _, err = run(capsys, "search", *TINY, "--channels", "8", "--strategy", "pcdarts",
                       "--set", "partial_channels=2", "--out", str(tmp_path / "r"))
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["search"]
    assert cfg["space_options"]["partial_channels"] == 2
    # a name two owners use differently: say how to choose
    code, _, err = run(capsys, "search", "--space", "toy", "--strategy", "random-ws", "--set",
                       "candidates=5")
    assert code == 2 and "space.candidates" in err and "strategy.candidates" in err
    code, _, err = run(capsys, "search", "--space", "toy", "--strategy", "random-ws", "--set",
                       "strategy.candidates=5", "--set", "steps_per_epoch=1", "--epochs", "1",
                       "--quiet", "--out", str(tmp_path / "t"))
    assert code == 0, err


# ---- security ---------------------------------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_crafted_checkpoint_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archgrad.search(epochs=1, out=tmp_path / "r", **KW)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    ck["history"].append(_Payload())
    torch.save(ck, tmp_path / "r" / "checkpoint.pt")
    (tmp_path / "r" / "result.json").unlink()
    with pytest.raises(ArchgradError, match="not a readable archgrad checkpoint"):
        archgrad.search(resume=tmp_path / "r")
    assert not (tmp_path / "PWNED").exists()


# ---- interruptions ------------------------------------------------------------------------------
def _strip(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory, with the times and the process's peak memory (machine
    measurements, not results) taken out of the JSON ones."""
    out = {}
    for p in sorted(run_dir.iterdir()):
        if p.name in (".lock",) or p.is_dir():
            continue
        data = p.read_bytes()
        if p.suffix in (".json", ".jsonl"):
            rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()] \
                if p.suffix == ".jsonl" else [json.loads(data)]
            for r in rows:  # times, and the run's identity (two runs never share it)
                for k in ("time_s", "search_time_s", "peak_rss_mb", "run_id"):
                    r.pop(k, None)
            data = json.dumps(rows, sort_keys=True).encode()
        elif p.suffix == ".csv":
            lines = data.decode().splitlines()
            head = lines[0].split(",")
            keep = [i for i, h in enumerate(head) if h != "time_s"]
            data = "\n".join(",".join(x for i, x in enumerate(line.split(","))
                                      if i in keep) for line in lines).encode()
        elif p.suffix == ".pt":
            ck = load_checkpoint(p)
            data = repr(sorted(ck)).encode()  # compared through the other files
        out[p.name] = data
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("full") / "r"
    res = archgrad.search(epochs=3, out=d, **KW)
    return d, res


@pytest.mark.parametrize("where", ["after_checkpoint", "before_checkpoint", "in_first_epoch",
                                   "before_results"])
def test_any_interruption_resumes_to_the_same_run_file_for_file(tmp_path, monkeypatch, full_run,
                                                                where):
    S = sys.modules["archgrad.search.loop"]  # the epoch loop
    full_dir, full = full_run
    cut = tmp_path / "cut"
    real_logs, real_save, real_finish = S._write_logs, S.save_checkpoint, S._finish
    calls = {"n": 0}

    def logs(run_dir, history, csv_too):  # killed between checkpoint and metrics.jsonl
        calls["n"] += 1
        if where == "after_checkpoint" and calls["n"] == 2:
            raise KeyboardInterrupt
        return real_logs(run_dir, history, csv_too)

    def save(path, state, **kw):
        if where == "before_checkpoint" and state["epoch"] == 1:
            raise KeyboardInterrupt
        if where == "in_first_epoch":
            raise KeyboardInterrupt
        return real_save(path, state, **kw)

    def finish(*a, **k):
        if where == "before_results":
            raise KeyboardInterrupt
        return real_finish(*a, **k)

    monkeypatch.setattr(S, "_write_logs", logs)
    monkeypatch.setattr(S, "save_checkpoint", save)
    monkeypatch.setattr(S, "_finish", finish)
    with pytest.raises(KeyboardInterrupt):
        archgrad.search(epochs=3, out=cut, **KW)
    monkeypatch.setattr(S, "_write_logs", real_logs)
    monkeypatch.setattr(S, "save_checkpoint", real_save)
    monkeypatch.setattr(S, "_finish", real_finish)
    (cut / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a write")  # a torn atomic write
    resumed = archgrad.search(resume=cut)
    assert _strip(resumed.history) == _strip(full.history)
    assert _files(cut) == _files(full_dir)
    assert not list(cut.glob(".*.tmp"))
    a, b = load_checkpoint(full_dir / "checkpoint.pt"), load_checkpoint(cut / "checkpoint.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_kill_9_at_a_random_point_then_resume(tmp_path, full_run):
    """A real process killed with SIGKILL once its first checkpoint exists; the resumed run ends
    with the uninterrupted run's result."""
    full_dir, full = full_run
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "archgrad", "search", "--dataset", "synthetic", "--channels",
           "4", "--cells", "1", "--batch-size", "32", "--device", "cpu", "--epochs", "3",
           "--quiet", "--out", str(cut)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (cut / "checkpoint.pt").exists() and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    res = archgrad.search(resume=cut)
    assert _strip(res.history) == _strip(full.history)
    assert {k: v for k, v in res.final.items() if k not in ("search_time_s", "peak_rss_mb")} == \
        {k: v for k, v in full.final.items() if k not in ("search_time_s", "peak_rss_mb")}


def test_sigterm_ends_a_run_like_ctrl_c_and_it_resumes(tmp_path, full_run):
    full_dir, full = full_run
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "archgrad", "search", "--dataset", "synthetic", "--channels",
           "4", "--cells", "1", "--batch-size", "32", "--device", "cpu", "--epochs", "3",
           "--quiet", "--out", str(cut)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (cut / "config.json").exists() and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:  # finished before the signal arrived: nothing to check
        return
    assert p.returncode == 143, err
    assert err.strip().splitlines()[-1] == f"archgrad: terminated; resume with: archgrad search " \
                                           f"--resume {cut}"
    res = archgrad.search(resume=cut)
    assert _strip(res.history) == _strip(full.history)


def test_a_second_process_on_the_same_directory_is_refused(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    with RunLock(d):
        with pytest.raises(ArchgradError, match="in use by another archgrad process"):
            archgrad.search(epochs=1, out=d, **KW)
    # a lock held by a process that was killed is free again
    code = ("import sys, os, time; sys.path.insert(0, %r); from archgrad.rundir import RunLock;"
            "RunLock(__import__('pathlib').Path(%r)).acquire(); print('held', flush=True); "
            "time.sleep(60)") % (str(Path(archgrad.__file__).parents[1]), str(d))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(ArchgradError, match="in use"):
        archgrad.search(epochs=1, out=d, **KW)
    p.kill()
    p.wait()
    archgrad.search(epochs=1, out=d, **KW)  # the kernel released the dead process's lock


# ---- damaged or foreign files -------------------------------------------------------------------
def _finished_run(tmp_path, name="r", **kw):
    d = tmp_path / name
    archgrad.search(epochs=2, out=d, **{**KW, **kw})
    return d


def _edit_config(d, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


CORRUPT = {
    "checkpoint truncated": (lambda d: (d / "checkpoint.pt").write_bytes(
        (d / "checkpoint.pt").read_bytes()[:500]), "checkpoint.pt is not a readable"),
    "checkpoint garbled": (lambda d: (d / "checkpoint.pt").write_bytes(b"\x00garbage" * 50),
                           "checkpoint.pt is not a readable"),
    "checkpoint empty": (lambda d: (d / "checkpoint.pt").write_bytes(b""),
                         "checkpoint.pt is empty"),
    "checkpoint not a dict": (lambda d: torch.save([1, 2], d / "checkpoint.pt"),
                              "is not an archgrad checkpoint"),
    "checkpoint epoch out of range": (lambda d: torch.save(
        {**load_checkpoint(d / "checkpoint.pt"), "epoch": 99}, d / "checkpoint.pt"),
        "is damaged"),
    "config truncated": (lambda d: (d / "config.json").write_text(
        (d / "config.json").read_text()[:40]), "config.json is not valid JSON"),
    "config garbled": (lambda d: (d / "config.json").write_text("{]"), "is not valid JSON"),
    "config empty": (lambda d: (d / "config.json").write_text(""), "is not valid JSON"),
    "config without search": (lambda d: (d / "config.json").write_text("{}"),
                              "has no 'search' section"),
    "config wrong type": (lambda d: _edit_config(d, lambda c: c["search"].update(epochs="2")),
                          "search.epochs has the wrong type"),
    "config unknown key": (lambda d: _edit_config(d, lambda c: c["search"].update(foo=1)),
                           "unknown setting search.foo"),
    "config bad option": (lambda d: _edit_config(
        d, lambda c: c["search"]["strategy_options"].update(arch_lr=-1)),
        "arch_lr must be a number > 0"),
    "config strategy edited": (lambda d: _edit_config(
        d, lambda c: c["search"].update(strategy="gdas")), "was changed after the search"),
    "config seed edited": (lambda d: _edit_config(d, lambda c: c["search"].update(seed=5)),
                           "was changed after the search"),
    "another run's checkpoint": (None, "belongs to another run"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_damaged_run_files_give_one_line_naming_the_file(capsys, tmp_path, case):
    d = _finished_run(tmp_path)
    (d / "result.json").unlink()  # an unfinished run, so that resume reads everything
    damage, needle = CORRUPT[case]
    if damage is None:
        other = _finished_run(tmp_path, "other")
        (d / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    else:
        damage(d)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}
    code, out, err = run(capsys, "search", "--resume", str(d), "--quiet")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before  # nothing written


def test_resuming_a_finished_run_writes_nothing(capsys, tmp_path):
    d = _finished_run(tmp_path)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()
              if p.is_file() and p.name != ".lock"}
    code, out, err = run(capsys, "search", "--resume", str(d), "--quiet")
    assert code == 0 and "is finished (2 epochs); nothing to do" in out, err
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in d.iterdir()
             if p.is_file() and p.name != ".lock"}
    assert after == before
    code, _, err = run(capsys, "search", "--resume", str(d), "--epochs", "4", "--quiet")
    assert code == 2 and "cannot be extended" in err and "functions of the total" in err


def test_an_existing_run_directory_is_not_overwritten(tmp_path):
    d = _finished_run(tmp_path)
    with pytest.raises(ArchgradError, match="already holds a search"):
        archgrad.search(epochs=1, out=d, **KW)


# ---- divergence ---------------------------------------------------------------------------------
def test_a_diverging_search_stops_with_one_line_and_no_result(capsys, tmp_path):
    d = tmp_path / "r"
    code, out, err = run(capsys, "search", "--dataset", "synthetic", "--channels", "4",
                         "--cells", "1", "--quiet", "--epochs", "2", "--set", "lr=1e6",
                         "--out", str(d))
    assert code == 3, err
    line = err.strip()
    assert len(line.splitlines()) == 1 and "diverged in epoch 1, step" in line
    assert "try a smaller learning rate (lr 1e+06" in line
    for f in ("result.json", "genotype.txt", "cell.png", "checkpoint.pt"):
        assert not (d / f).exists(), f


def test_a_search_diverging_later_keeps_its_last_good_checkpoint(tmp_path, monkeypatch):
    import archgrad.strategy as St
    real = St.Strategy.weight_step
    calls = {"n": 0}

    def step(self, ctx):
        calls["n"] += 1
        out = real(self, ctx)
        if ctx.epoch == 1:
            out["train_loss"] = out["train_loss"] * float("nan")
        return out

    monkeypatch.setattr(St.Strategy, "weight_step", step)
    with pytest.raises(archgrad.errors.DivergenceError, match="epoch 2, step 1: the training loss"):
        archgrad.search(epochs=3, out=tmp_path / "r", **KW)
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["epoch"] == 0
    assert not (tmp_path / "r" / "result.json").exists()


def test_diverging_training_stops_too(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--genotype", BEST, "--dataset", "synthetic",
                       "--channels", "4", "--cells", "1", "--epochs", "1", "--quiet", "--lr",
                       "1e30", "--batch-size", "32", "--out", str(tmp_path / "t"))
    assert code == 3 and "training diverged in epoch 1" in err, err
    assert not (tmp_path / "t" / "train_result.json").exists()


# ---- figures that mean what they say ------------------------------------------------------------
def test_records_show_a_readable_distribution_summary(capsys, tmp_path):
    code, out, err = run(capsys, "search", *TINY, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "largest probability per edge" in out and "search time" in out
    assert "over 1 epoch\n" in out  # not "1 epochs"
    rec = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.2 <= rec["max_prob"] <= 1.0
    csv = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,") and "max_prob" in csv[0] and len(csv) == 2


def test_compare_skips_what_is_not_a_search_run(capsys, tmp_path):
    assert run(capsys, "search", *TINY, "--out", str(tmp_path / "s"))[0] == 0
    assert run(capsys, "train", "--genotype", BEST, *TINY, "--out", str(tmp_path / "t"))[0] == 0
    (tmp_path / "junk").mkdir()
    code, out, err = run(capsys, "compare", str(tmp_path / "s"), str(tmp_path / "t"),
                         str(tmp_path / "junk"), "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    assert "skipped" in out and "(a training run)" in out and "(1 run)" in out
    # damaged runs in the glob are skipped, each named with the damaged file
    import shutil
    for name in ("bad_result", "bad_config", "bad_metrics"):
        shutil.copytree(tmp_path / "s", tmp_path / name)
    (tmp_path / "bad_result" / "result.json").write_text("garbage")
    (tmp_path / "bad_config" / "config.json").write_text('{"search":')
    with open(tmp_path / "bad_metrics" / "metrics.jsonl", "a") as f:
        f.write("garbage\n")
    code, out, err = run(capsys, "compare", *(str(tmp_path / n) for n in
                                              ("s", "bad_result", "bad_config", "bad_metrics")),
                         "--out", str(tmp_path / "cmp2"))
    assert code == 0 and "(1 run)" in out, err
    for name, damaged in (("bad_result", "result.json"), ("bad_config", "config.json"),
                          ("bad_metrics", "metrics.jsonl")):
        assert f"skipped {tmp_path / name} ({damaged} is damaged)" in out


def test_a_damaged_genotype_file_is_named_by_every_command_that_reads_it(capsys, tmp_path):
    assert run(capsys, "search", *TINY, "--out", str(tmp_path / "s"))[0] == 0
    (tmp_path / "s" / "genotype.txt").write_text("garbage\n")
    g = str(tmp_path / "s")
    for argv in (["lookup", g], ["info", g], ["draw", g, "--out", str(tmp_path / "d")],
                 ["export", g, "--out", str(tmp_path / "m")],
                 ["train", "--genotype", g, *TINY, "--out", str(tmp_path / "t")]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1, (argv, err)
        assert f"{tmp_path / 's' / 'genotype.txt'} is damaged (malformed" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_searches_started_in_the_same_second_get_their_own_run_directories(tmp_path,
                                                                           monkeypatch):
    from archgrad.runs.rundir import claimed, new_run_dir
    monkeypatch.chdir(tmp_path)
    kw = dict(space="nb201", dataset="synthetic", C=4, N=1, epochs=1, device="cpu")
    name = new_run_dir("runs", "nb201", "darts", "synthetic")
    other = new_run_dir("runs", "train", "nb201", "synthetic")
    # another process picked the same name and created it while this one validated
    name.mkdir(parents=True)
    res = archgrad.search(out=name, **kw)
    assert res.run_dir == claimed(name) == Path(f"{name}-2")
    assert (res.run_dir / "result.json").is_file() and not any(name.iterdir())
    # a name the user gives is used as it is: a second search there is refused
    with pytest.raises(ArchgradError, match="already holds a search"):
        archgrad.search(out=res.run_dir, **kw)
    other.mkdir(parents=True)
    (other / "x").write_text("another process's")
    tr = archgrad.train("nb201", BEST, dataset="synthetic", C=4, N=1, epochs=1, device="cpu",
                        out=other)
    assert claimed(other) == Path(f"{other}-2") and (Path(f"{other}-2") / "model.pt").is_file()
    assert tr


def test_cell_diagrams_are_reproducible(tmp_path):
    from archgrad.experiments.plot import draw
    from archgrad.spaces.darts import named_genotype
    draw(named_genotype("DARTS_V2"), tmp_path / "a")
    draw(named_genotype("DARTS_V2"), tmp_path / "b")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert b"<dc:date>" not in (tmp_path / "a.svg").read_bytes()


def test_the_toy_task_reports_its_teacher():
    res = archgrad.search(space="toy", strategy="darts", epochs=2, steps_per_epoch=5,
                          device="cpu")
    f = res.final
    assert len(f["teacher"].split(",")) == 10 and isinstance(f["found_teacher"], bool)
    assert 0 <= f["edges_right"] <= 10
    assert "teacher" in res.history[-1]


def test_info_network_options(capsys):
    code, out, _ = run(capsys, "info", "DARTS_V2", "--space", "darts", "--set",
                       "network=imagenet", "--json")
    assert code == 0 and json.loads(out)["params"] == 4_718_752  # 1000 classes (official 4.7M)


def test_list_shows_defaults_and_types_and_survives_a_closed_pipe():
    out = subprocess.run([sys.executable, "-m", "archgrad", "list", "strategies"],
                         capture_output=True, text=True).stdout
    assert "arch_lr = 0.0003  (a number > 0)" in out
    p = subprocess.run(f"{sys.executable} -m archgrad list --json | head -1", shell=True,
                       capture_output=True, text=True)
    assert p.stdout.strip() == "{" and "Error" not in p.stderr, p.stderr


# ---- logging and export -----------------------------------------------------------------------
def test_tensorboard_logging_is_optional(capsys, tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    code, _, err = run(capsys, "search", *TINY, "--tensorboard", "--out", str(tmp_path / "r"))
    assert code == 2 and "pip install tensorboard" in err
    assert not (tmp_path / "r").exists()


def test_train_exports_a_model_that_loads_without_archgrad(capsys, tmp_path):
    t = tmp_path / "t"
    code, out, err = run(capsys, "train", "--genotype", BEST, *TINY, "--out", str(t))
    assert code == 0 and "model.pt2" in out, err
    net = archgrad.load_model(t / "model.pt")
    x = torch.randn(3, 3, 8, 8)
    net.eval()
    code = ("import sys; sys.modules['archgrad'] = None; import torch; "
            f"m = torch.export.load({str(t / 'model.pt2')!r}).module(); "
            "torch.manual_seed(0); x = torch.randn(3, 3, 8, 8); print(m(x).shape)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and "torch.Size([3, 10])" in p.stdout, p.stderr
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 8)
    m = torch.export.load(t / "model.pt2").module()
    assert torch.allclose(m(x), net(x), atol=1e-5)


def test_export_any_genotype(capsys, tmp_path):
    code, out, err = run(capsys, "export", "DARTS_V2", "--space", "darts", "--channels", "4",
                         "--cells", "3", "--out", str(tmp_path / "v2"))
    assert code == 0, err
    net = archgrad.load_model(tmp_path / "v2.pt")
    assert sum(p.numel() for p in net.parameters()) > 0
    assert (tmp_path / "v2.pt2").stat().st_size > 1000


@pytest.mark.parametrize("space", SPACES.names())
@pytest.mark.parametrize("seed", [0, 1])
def test_every_space_exports_a_program_equal_to_its_network(space, seed, tmp_path):
    """The torch.export program of a derived genotype computes what the network computes, at
    another batch size than it was traced with; a language model's program, called once per
    time step with the state it returned, what the network computes over the whole window."""
    from archgrad.data.text import StateBox, Window
    from archgrad.engine.train import export_example, export_program
    sp = get_space(space, **SPACES.get(space).tiny)
    g = torch.Generator().manual_seed(seed)
    probs = {c.label: torch.randn(c.shape, generator=g).softmax(-1) for c in sp.choices()}
    torch.manual_seed(seed)
    net = sp.build(sp.derive(probs)).eval()
    x, _ = sp.example_batch(3, torch.Generator().manual_seed(seed + 10))
    size = None if sp.modality == "sequence" else x.shape[-1]
    export_program(net, export_example(net, sp, size), tmp_path / "m.pt2")
    prog = torch.export.load(tmp_path / "m.pt2").module()
    with torch.no_grad():
        if sp.modality == "sequence":
            tokens = x.tokens
            want = net(Window(tokens, None, StateBox())).log_probs
            state = net.init_state(tokens.size(1), want)
            got = []
            for t in range(tokens.size(0)):
                lp, state = prog(tokens[t:t + 1], state)
                got.append(lp)
            got = torch.cat(got)
        else:
            want, got = net(x), prog(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("out", ["new/nested/run", "somedir"])
def test_a_set_up_refused_after_the_checks_leaves_no_directory_or_lock(capsys, tmp_path,
                                                                       monkeypatch, ptb_dir, out):
    # a corpus too short for the batch is found when the task is built, after the run
    # directory and its lock exist: they go again
    monkeypatch.chdir(tmp_path)
    (tmp_path / "somedir").mkdir()
    for cmd in (["search", "--space", "darts-rnn", "--strategy", "darts"],
                ["train", "--space", "darts-rnn", "--genotype", "DARTS_V2"]):
        code, _, err = run(capsys, *cmd, "--dataset", "ptb", "--data-dir", str(ptb_dir),
                           "--subset", "10", "--out", out)
        assert code == 2 and "too short for batches" in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["somedir"]
        assert not list((tmp_path / "somedir").iterdir())


def test_resuming_a_run_with_the_other_command_says_which_command_it_needs(capsys, tmp_path):
    s, t = tmp_path / "s", tmp_path / "t"
    (s).mkdir()
    (s / "config.json").write_text("{}")
    (t).mkdir()
    (t / "train_config.json").write_text("{}")
    code, _, err = run(capsys, "train", "--resume", str(s))
    assert code == 2 and f"it is a search (archgrad search --resume {s}" in err
    code, _, err = run(capsys, "search", "--resume", str(t))
    assert code == 2 and f"it is a training run (archgrad train --resume {t})" in err
    assert sorted(p.name for p in s.iterdir()) == ["config.json"]  # nothing written
    assert sorted(p.name for p in t.iterdir()) == ["train_config.json"]


@pytest.mark.parametrize("space", SPACES.names())
def test_exclude_none_removes_the_zero_candidate_wherever_a_space_has_one(capsys, tmp_path,
                                                                          space):
    """--exclude-none on every space: where it has a zero ('none') candidate, the option that
    removes it, and none is left; elsewhere one line saying there is none to remove."""
    cls = SPACES.get(space)
    has_zero = any(c.zero for g in get_space(space, **cls.tiny).choices() for c in g.candidates)
    code, out, err = run(capsys, "search", "--space", space, "--exclude-none", "--dry-run",
                         "--json", "--dataset", "synthetic-text" if cls.modality == "sequence"
                         else "synthetic" if not cls.own_data else cls.own_data,
                         "--batch-size", "8",
                         *[a for k, v in cls.tiny.items() for a in ("--set", f"{k}={v}")])
    if not has_zero:
        assert code == 2 and "has no 'none' candidate to exclude" in err
        return
    assert code == 0, err
    opts = json.loads(out)["space_options"]
    left = get_space(space, **opts).choices()
    assert all(not c.zero for g in left for c in g.candidates)
    assert all(len(g.candidates) == len(h.candidates) - 1
               for g, h in zip(left, get_space(space, **cls.tiny).choices()))
