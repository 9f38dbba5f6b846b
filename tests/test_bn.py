"""BN statistics recalibrated for one architecture, then restored."""
import torch

import archgrad
from archgrad.core.bn import bn_modules, recalibrated
from archgrad.spaces import get_space


def test_recalibration_averages_batches_and_restores_the_supernet():
    torch.manual_seed(0)
    sp = get_space("nb201", C=4, N=1)
    net = sp.supernet()
    mix = sp.discrete_mix("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    g = torch.Generator().manual_seed(0)
    batches = [sp.example_batch(16, g) for _ in range(3)]
    before = [(m.running_mean.clone(), m.running_var.clone()) for m in bn_modules(net)]
    stem_bn = net.net.stem[1]
    with recalibrated(net, mix, batches):
        # the stem's BN sees the raw images: its statistic is the mean of the batches' means
        means = [net.net.stem[0](x).mean((0, 2, 3)) for x, _ in batches]
        assert torch.allclose(stem_bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    after = [(m.running_mean, m.running_var) for m in bn_modules(net)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(before, after))


class _SharedBN(torch.nn.Module):
    """One batch norm called three times a forward, as a recurrent cell's is over time steps
    and nodes."""

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(3, affine=False)

    def forward(self, x, mix=None):
        return [self.bn(x * k + k) for k in (1.0, 2.0, 3.0)]


def test_recalibration_averages_every_call_of_a_batch_norm_used_several_times_a_batch():
    net = _SharedBN()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, generator=g), None) for _ in range(4)]
    calls = [x * k + k for x, _ in batches for k in (1.0, 2.0, 3.0)]
    with recalibrated(net, None, batches):
        # PyTorch's cumulative average: the mean of every call's batch mean and unbiased
        # variance (a momentum of 1/(batch+1) kept each batch's last call only)
        assert torch.allclose(net.bn.running_mean, torch.stack([c.mean(0) for c in calls]).mean(0),
                              atol=1e-6)
        assert torch.allclose(net.bn.running_var, torch.stack([c.var(0) for c in calls]).mean(0),
                              atol=1e-5)
    assert torch.equal(net.bn.running_mean, torch.zeros(3)) and net.bn.momentum == 0.1


def test_recalibrated_statistics_keep_a_derived_recurrent_cell_stable():
    res = archgrad.search(space="darts-rnn", strategy="darts", dataset="synthetic-text", epochs=2,
                          ninp=16, nhid=16, steps=2, device="cpu")
    f = res.final
    # the shared batch norm of the search cell, recalibrated for the derived cell: close to the
    # supernet's figure (each batch's last call alone gave a perplexity of 1e304)
    assert abs(f["derived_valid_loss_bn"] - f["derived_valid_loss"]) < 0.5, f


def test_final_result_reports_both_gaps():
    res = archgrad.search(strategy="reinforce", dataset="synthetic", epochs=1, C=4, N=1,
                          device="cpu")
    f = res.final
    assert f["discretization_gap"] == f["supernet_valid_acc"] - f["derived_valid_acc"]
    assert f["discretization_gap_bn"] == f["supernet_valid_acc"] - f["derived_valid_acc_bn"]


def test_a_sampling_strategys_supernet_is_evaluated_one_network_per_training_batch():
    from archgrad.data import load_dataset
    from archgrad.engine.task import ImageTask
    sp = get_space("nb201", C=4, N=1)
    model = sp.supernet()
    data = load_dataset("synthetic")
    task = ImageTask(data, 32, 0, torch.device("cpu"), sp.loss)
    lens = [len(y) for _, y in task.eval_loader.epoch(0)]
    n = sum(lens)
    fixed = sp.discrete_mix("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|"
                            "skip_connect~1|skip_connect~2|")
    sizes = []

    def draw():  # a "sampled" network: here always the same one, so the figure must not move
        sizes.append(None)
        return fixed

    seen = []
    handle = model.register_forward_pre_hook(lambda m, a: seen.append(len(a[0])))
    a = task.evaluate(model, draw)
    handle.remove()
    assert len(sizes) == sum(-(-k // 32) for k in lens) > len(lens)  # a draw per 32 examples
    assert max(seen) == 32 and sum(seen) == n
    b = task.evaluate(model, fixed)  # one mix: whole evaluation batches
    assert abs(a["acc"] - b["acc"]) < 1e-9 and abs(a["loss"] - b["loss"]) < 1e-5
