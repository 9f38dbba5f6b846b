"""No host synchronisation inside a step (issue 13): a step of a strategy whose computation does
not depend on a draw reads no tensor back into Python (``item``, ``float``, ``bool``,
``tolist``, ``cpu``, ...). On a GPU each such read stalls the queue of kernels. Checked on CPU by
intercepting the reads with a torch function mode, for every registered strategy.

Strategies that sample an architecture must read the sample (it decides which ops run), so
their estimators (``dense = False``) are exempt, and so are two dense ones whose computation a
step changes by design: NASP (the binarised architecture picks the ops of the weight step) and
XNAS (wipeout removes experts from the next forward); OLES reads its gradient-matching scores
to decide which operations stop training."""
import collections
import traceback

import pytest
from torch.overrides import TorchFunctionMode

import archgrad
from archgrad.core.strategy import Strategy
from archgrad.methods import STRATEGIES, make_strategy

READS = {"item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy", "cpu"}
DECIDE_ON_THE_HOST = {"nasp", "xnas", "oles"}


class _Reads(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.where = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            stack = traceback.extract_stack()[:-1]
            # torch's optimizers keep their step counters on the CPU: reading them is free
            if not any("torch/optim" in f.filename.replace("\\", "/") for f in stack):
                mine = [f for f in stack if "archgrad" in f.filename]
                f = mine[-1] if mine else stack[-1]
                self.where[f"{name} at {f.filename.rsplit('/', 1)[-1]}:{f.lineno}"] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_step_reads_nothing_back_unless_it_samples(name, monkeypatch):
    strat = make_strategy(name)
    if not strat.estimator.dense or name in DECIDE_ON_THE_HOST:
        pytest.skip("reads its draw or decision back by design")
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
    archgrad.search(space="nb201", strategy=name, dataset="digits", subset=96, C=4, N=1,
                    batch_size=16, epochs=max(2, strat.min_epochs), device="cpu", eval_every=0)
    assert not reads, dict(reads)
