"""BN statistics recalibrated for one architecture, then restored."""
import torch

import archgrad
from archgrad.bn import bn_modules, recalibrated
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


def test_final_result_reports_both_gaps():
    res = archgrad.search(strategy="reinforce", dataset="synthetic", epochs=1, C=4, N=1,
                          device="cpu")
    f = res.final
    assert f["discretization_gap"] == f["supernet_valid_acc"] - f["derived_valid_acc"]
    assert f["discretization_gap_bn"] == f["supernet_valid_acc"] - f["derived_valid_acc_bn"]
