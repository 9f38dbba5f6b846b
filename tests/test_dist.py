"""Data-parallel search under torchrun on CPU (gloo), two processes: the architecture
parameters and the weights bit-identical on every rank after every epoch, for a dense and a
sampling strategy; one run directory; an interrupted run resumed under torchrun ends with the
same result; bad set-ups refused in one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes and whole runs: the second pytest call

HERE = Path(__file__).parent


def torchrun(*args, env=None, n=2):
    e = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)


def _result(run):
    r = json.loads((run / "result.json").read_text())
    return {k: v for k, v in r.items() if k not in ("search_time_s", "peak_rss_mb")}


@pytest.mark.parametrize("strategy,space", [("darts", "nb201"), ("gdas", "nb201"),
                                            ("reinforce", "nb201"), ("darts", "darts-rnn")])
def test_two_processes_hold_identical_parameters(tmp_path, strategy, space, ptb_dir):
    run = tmp_path / "run"
    p = torchrun(str(HERE / "dist_worker.py"), str(run), strategy, space, "0",
                 env={"PTB_DIR": str(ptb_dir)})
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads((tmp_path / "dist_report.json").read_text())
    assert rep["world"] == 2 and rep["equal"] == [True, True, True]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["backend"] == "gloo"
    assert (run / "result.json").is_file() and (run / "genotype.txt").is_file()
    assert not list(run.glob("*.tmp")) and not list(tmp_path.glob("run?*"))


def test_resume_under_torchrun_is_exact(tmp_path):
    full, cut = tmp_path / "a" / "run", tmp_path / "b" / "run"
    full.parent.mkdir()
    cut.parent.mkdir()
    p = torchrun(str(HERE / "dist_worker.py"), str(full), "gdas", "nb201", "0")
    assert p.returncode == 0, p.stderr[-2000:]
    p = torchrun(str(HERE / "dist_worker.py"), str(cut), "gdas", "nb201", "1")
    assert p.returncode != 0 and not (cut / "result.json").exists()
    p = torchrun(str(HERE / "dist_worker.py"), str(cut), "gdas", "nb201", "0", "resume")
    assert p.returncode == 0, p.stderr[-2000:]
    assert _result(full) == _result(cut)
    # the metrics apart from the timings
    strip = lambda path: [{k: v for k, v in json.loads(x).items() if k != "time_s"}  # noqa
                          for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert strip(full) == strip(cut)


def test_bad_setups_are_refused_in_one_line(tmp_path):
    from archgrad.cli import main  # noqa: F401 (the CLI is importable)
    # a batch the processes do not divide
    p = torchrun("-m", "archgrad", "search", "--dataset", "synthetic", "--epochs", "1",
                 "--channels", "4", "--cells", "1", "--batch-size", "15", "--device", "cpu",
                 "--out", str(tmp_path / "r"), "--quiet")
    assert p.returncode != 0
    assert "must be divisible by their number" in p.stderr
    assert not (tmp_path / "r").exists()
    # the line once, and every process leaves with status 2 (no SIGTERM in torchrun's summary)
    assert p.stderr.count("archgrad: error:") == 1, p.stderr[-3000:]
    assert p.stderr.count("exitcode  : 2") == 2 and "Signal 15" not in p.stderr, p.stderr[-3000:]
    # resuming with another number of processes
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "archgrad", "search", "--dataset", "synthetic",
                    "--epochs", "2", "--channels", "4", "--cells", "1", "--batch-size", "16",
                    "--device", "cpu", "--out", str(one), "--quiet"], check=True,
                   capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    (one / "result.json").unlink()
    p = torchrun("-m", "archgrad", "search", "--resume", str(one), "--quiet")
    assert p.returncode != 0 and "resume it with 1" in p.stderr
    if not _has_cuda():
        p = torchrun("-m", "archgrad", "search", "--dataset", "synthetic", "--epochs", "1",
                     "--device", "cuda", "--out", str(tmp_path / "c"), "--quiet")
        assert p.returncode != 0 and "has no CUDA GPU" in p.stderr
        # refused before the process group exists: still once, still status 2 everywhere
        assert p.stderr.count("archgrad: error:") == 1, p.stderr[-3000:]
        assert p.stderr.count("exitcode  : 2") == 2 and "Signal 15" not in p.stderr


def _has_cuda():
    import torch
    return torch.cuda.is_available()


@pytest.mark.parametrize("amp,dtype", [("bf16", "torch.bfloat16"), ("fp16", "torch.float16")])
def test_mixed_precision_runs_the_forward_low_and_keeps_parameters_fp32(tmp_path, amp, dtype):
    import torch

    import archgrad
    seen = set()

    def watch(record, live):
        model, strat = live["model"], live["strategy"]
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(p.dtype == torch.float32 for p in strat.arch.parameters())
        assert (strat.scaler is not None) == (amp == "fp16")

    def hook(mod, inp, out):
        seen.add(str(out.dtype))

    from archgrad.spaces import get_space as real

    def spying(*a, **k):
        sp = real(*a, **k)
        make = sp.supernet

        def supernet():
            net = make()
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.register_forward_hook(hook)
            return net
        sp.supernet = supernet
        return sp

    import importlib
    S = importlib.import_module("archgrad.search.plan")  # where the stages are built
    old = S.get_space
    S.get_space = spying
    try:
        res = archgrad.search(dataset="synthetic", C=4, N=1, batch_size=32, epochs=2,
                              device="cpu", amp=amp, out=tmp_path / "r", callbacks=[watch])
    finally:
        S.get_space = old
    assert dtype in seen  # the convolutions ran in low precision
    assert json.loads((tmp_path / "r" / "config.json").read_text())["search"]["amp"] == amp
    assert res.final["supernet_valid_acc"] >= 0


def test_sync_batch_norm_equals_one_process_on_the_whole_batch(tmp_path):
    out = tmp_path / "syncbn.json"
    p = torchrun(str(HERE / "syncbn_worker.py"), str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["world"] == 2 and rep["no_grad_local"]
    assert rep["worst"] < 1e-12


def test_sync_bn_search_on_two_processes_is_the_one_process_search(tmp_path):
    """Two steps of a dense search: with --sync-bn the weights end where one process's search
    of the same global batches ends (up to float rounding); with each shard's statistics they
    do not."""
    import torch
    args = ["--space", "nb201", "--strategy", "darts", "--dataset", "digits", "--epochs", "1",
            "--subset", "64", "--channels", "4", "--cells", "1", "--batch-size", "16",
            "--device", "cpu", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "archgrad", "search", *args, "--out",
                          str(tmp_path / "one")], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert one.returncode == 0, one.stderr[-2000:]
    for name, extra in (("sync", ["--sync-bn"]), ("shard", [])):
        p = torchrun("-m", "archgrad", "search", *args, *extra, "--out", str(tmp_path / name))
        assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((tmp_path / "sync" / "config.json").read_text())
    assert cfg["search"]["sync_bn"] is True

    def weights(name):
        m = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]
        return torch.cat([v.double().reshape(-1) for k, v in sorted(m.items())
                          if v.is_floating_point()])
    w1 = weights("one")
    assert (weights("sync") - w1).abs().max() < 1e-5
    assert (weights("shard") - w1).abs().max() > 1e-3
