"""The CUDA path, executed: every strategy on every space on the GPU (every tensor of a step on
the model's device), CPU and GPU agreeing for the same seed where the ops are deterministic,
bf16 / fp16 against fp32, no host reads in a dense step, the GPU-resident data path against the
CPU loader, a CUDA-trained model loaded on the CPU, and a one-process NCCL torchrun search with
its resume. Marked ``cuda``; skipped without a GPU (CI has none), run by bench/gpu_check.py.

    pytest -m cuda tests/test_cuda.py
    ARCHGRAD_CUDA_TEST_DEVICE=cpu pytest tests/test_cuda.py   # a rehearsal of the tests' code
"""
import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import archgrad
from archgrad.methods import STRATEGIES, make_strategy
from archgrad.search import with_space_defaults
from archgrad.spaces import SPACES, get_space

DEV = os.environ.get("ARCHGRAD_CUDA_TEST_DEVICE", "cuda")  # "cpu": rehearse without a GPU
REHEARSAL = DEV == "cpu"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not REHEARSAL and not torch.cuda.is_available(), reason="no CUDA GPU here")]
needs_gpu = pytest.mark.skipif(REHEARSAL, reason="compares the GPU with the CPU")
HERE = Path(__file__).parent
PAIRS = [(st, sp) for st in STRATEGIES.names() for sp in SPACES.names()]
# deterministic dense strategies: the same seed gives the same step on CPU and GPU up to float
# rounding (sampling strategies draw from the same generator too, but a near-tie can flip)
DENSE = ["darts", "darts-2nd", "darts-single", "pcdarts", "fairdarts", "beta-darts",
         "gaea-darts", "darts-minus"]


@pytest.fixture(autouse=True)
def _exact_float32():
    tf = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
          torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = tf


class _Devices(TorchFunctionMode):
    """The devices of every tensor an op returns (a CPU one where a GPU one belongs is a
    host-device copy per step)."""

    def __init__(self):
        super().__init__()
        self.cpu = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for o in outs:
            if isinstance(o, torch.Tensor) and o.device.type == "cpu" and o.dim() > 0:
                self.cpu[getattr(func, "__name__", str(func))] += 1
        return out


def _setup(strategy, space, device, seed=0):
    torch.manual_seed(seed)
    strat = make_strategy(strategy)
    sp = get_space(space, **with_space_defaults(SPACES.get(space), SPACES.get(space).tiny, strat))
    model = sp.supernet().to(device)
    strat.setup(sp.choices(), model, seed=seed, device=torch.device(device),
                costs=sp.op_costs() if strat.needs_costs else None)
    return strat, sp, model


def _steps(strat, sp, device, n=2, seed=0, watch=None):
    g = torch.Generator().manual_seed(seed)
    epochs = 10
    epoch = strat.first_arch_epoch(epochs)
    strat.set_lr(epoch, epochs)
    stats = []
    for step in range(n * strat.arch_every):
        tb, vb = (_to(sp.example_batch(8, g), device) for _ in range(2))
        if watch is not None:
            with watch:
                stats.append(strat.step(tb, vb, loss_fn=sp.loss, epoch=epoch, epochs=epochs,
                                        step=step, steps_per_epoch=n * strat.arch_every))
        else:
            stats.append(strat.step(tb, vb, loss_fn=sp.loss, epoch=epoch, epochs=epochs,
                                    step=step, steps_per_epoch=n * strat.arch_every))
    return stats


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if hasattr(batch, "_fields"):  # a named tuple (a language model's Window)
        return type(batch)(*(_to(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    return batch


@pytest.mark.parametrize("strategy,space", PAIRS)
def test_every_strategy_on_every_space_runs_on_the_gpu(strategy, space):
    strat, sp, model = _setup(strategy, space, DEV)
    watch = _Devices()
    stats = _steps(strat, sp, DEV, watch=watch)
    for p in list(model.parameters()) + list(strat.arch.parameters()):
        assert p.device.type == DEV and torch.isfinite(p).all()
    for s in stats:
        for k in ("train_loss", "arch_loss"):
            if k in s:
                assert torch.isfinite(torch.as_tensor(s[k])).all(), k
    sys.path.insert(0, str(HERE))
    from test_host_sync import DECIDE_ON_THE_HOST
    if strat.estimator.dense and strategy not in DECIDE_ON_THE_HOST and not REHEARSAL:
        assert not watch.cpu, dict(watch.cpu)  # no tensor of a dense step left on the host


@needs_gpu
@pytest.mark.parametrize("strategy", DENSE)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_dense_step_on_the_gpu_is_the_cpu_step(strategy, seed):
    got = {}
    for dev in ("cpu", "cuda"):
        strat, sp, model = _setup(strategy, "nb201", dev, seed)
        _steps(strat, sp, dev, n=2, seed=seed)
        got[dev] = (torch.cat([p.detach().reshape(-1).cpu() for p in strat.arch.parameters()]),
                    torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()]))
    for a, b in zip(got["cpu"], got["cuda"]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_the_gpu_follows_fp32(tmp_path, amp):
    kw = dict(dataset="synthetic", C=8, N=1, batch_size=64, epochs=2, device=DEV, seed=0)
    ref = archgrad.search(**kw)
    low = archgrad.search(amp=amp, out=tmp_path / "r", **kw)
    a = [r["train_loss"] for r in ref.history]
    b = [r["train_loss"] for r in low.history]
    assert all(abs(x - y) <= 0.05 * abs(x) + 0.02 for x, y in zip(a, b)), (a, b)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["search"]["amp"] == amp


def test_a_dense_step_reads_nothing_back_on_the_gpu(monkeypatch):
    sys.path.insert(0, str(HERE))
    from test_host_sync import DECIDE_ON_THE_HOST, _Reads

    from archgrad.core.strategy import Strategy
    for name in DENSE:
        if name in DECIDE_ON_THE_HOST:
            continue
        reads = collections.Counter()
        step = Strategy.step

        def counted(self, *a, **k):
            if k["epoch"] < k["epochs"] - 1 or k["step"] == 0:
                return step(self, *a, **k)
            mode = _Reads()
            with mode:
                out = step(self, *a, **k)
            reads.update(mode.where)
            return out
        monkeypatch.setattr(Strategy, "step", counted)
        archgrad.search(space="nb201", strategy=name, dataset="synthetic", C=4, N=1,
                        batch_size=16, epochs=2, device=DEV, eval_every=0)
        monkeypatch.undo()
        assert not reads, (name, dict(reads))


@needs_gpu
@pytest.mark.parametrize("augment,cutout", [(False, 0), (True, 0), (True, 4)])
def test_the_gpu_resident_batches_are_the_cpu_loaders(augment, cutout):
    from archgrad.data import BatchLoader
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (200,), generator=g)
    kw = dict(mean=torch.tensor([0.5, 0.4, 0.3]), std=torch.tensor([0.2, 0.25, 0.3]),
              shuffle=True, augment=augment, cutout=cutout, seed=3)
    cpu = BatchLoader(x, y, 32, device="cpu", **kw)
    gpu = BatchLoader(x, y, 32, device="cuda", **kw)
    assert gpu.resident
    for epoch in (0, 1):
        for (a, ya), (b, yb) in zip(cpu.epoch(epoch), gpu.epoch(epoch)):
            assert b.device.type == "cuda"
            assert torch.equal(ya, yb.cpu()) and torch.allclose(a, b.cpu(), atol=1e-6)


def test_a_model_trained_on_the_gpu_loads_and_runs_on_the_cpu(tmp_path):
    g = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    archgrad.train("nb201", g, "synthetic", epochs=1, batch_size=32, C=4, N=1, device=DEV,
                   out=tmp_path / "t")
    net = archgrad.load_model(tmp_path / "t" / "model.pt").eval()
    assert all(p.device.type == "cpu" for p in net.parameters())
    x = torch.randn(3, 3, 8, 8)
    prog = torch.export.load(tmp_path / "t" / "model.pt2").module()
    assert torch.allclose(prog(x), net(x), atol=1e-4)


def test_a_one_process_nccl_search_and_its_resume(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH",
                                                                                   "")]))

    def torchrun(*args):
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node=1", "-m", "archgrad", *args],
                              capture_output=True, text=True, env=env, timeout=300)
    base = ["--dataset", "synthetic", "--channels", "4", "--cells", "1", "--batch-size", "32",
            "--device", DEV, "--quiet"]
    full = tmp_path / "full"
    p = torchrun("search", *base, "--epochs", "3", "--out", str(full))
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["backend"] == ("gloo" if REHEARSAL else "nccl")
    assert cfg["device"].startswith(DEV)
    cut = tmp_path / "cut"
    p = torchrun("search", *base, "--epochs", "3", "--out", str(cut))
    assert p.returncode == 0
    (cut / "result.json").unlink()
    (cut / "genotype.txt").unlink()
    os.replace(cut / "checkpoint.prev.pt", cut / "checkpoint.pt")  # as if cut an epoch early
    p = torchrun("search", "--resume", str(cut), "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    a = json.loads((full / "result.json").read_text())
    b = json.loads((cut / "result.json").read_text())
    assert a["genotype"] == b["genotype"]
    assert a["supernet_valid_acc"] == pytest.approx(b["supernet_valid_acc"], abs=0.5)

