"""An end-to-end search on the default dataset (digits) with every registered strategy."""
import pytest

import archgrad
from archgrad.methods import STRATEGIES


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_search_on_digits(strategy, tmp_path):
    # progressive strategies rebuild the supernet per stage: two epochs in each stage
    epochs = max(2, 2 * archgrad.get_strategy(strategy).min_epochs)
    res = archgrad.search(strategy=strategy, dataset="digits", epochs=epochs, C=4, N=1,
                          device="cpu", out=tmp_path / "r")
    assert len(res.history) == epochs
    assert (tmp_path / "r" / "cell.png").is_file() and (tmp_path / "r" / "cell.svg").is_file()
    # the shared weights learn: the training loss falls from the first epoch to the second.
    # (Sampled strategies train a different subnetwork every step, so they learn slowly; the
    # eval-mode accuracy of so short a run is not asserted either, as BN running statistics
    # have not caught up after 22 steps.)
    assert res.history[1]["train_loss"] < res.history[0]["train_loss"] < 2.4
    assert 0 < res.final["benchmark"]["cifar10"] <= 100
    assert (tmp_path / "r" / "genotype.txt").read_text().strip() == str(res.genotype)
