"""AdvantageNAS's toy teacher-student space (§5.1)."""
import pytest
import torch

import archgrad
from archgrad.errors import ArchgradError, GenotypeError
from archgrad.spaces import get_space
from archgrad.spaces.toy import teacher_genotype


def _space_model(seed=0, **opts):
    torch.manual_seed(seed)
    sp = get_space("toy", **opts)
    model = sp.supernet()
    return sp, model, sp.task(model, 100, seed, "cpu")


def test_shapes_and_paper_settings():
    sp, model, task = _space_model()
    (g,) = sp.choices()
    assert g.shape == (10, 10) and g.edges == tuple((0, i) for i in range(1, 11))
    assert model.conv_weight.shape == (10, 10, 1, 7, 7)
    assert model.head_weight.shape == (10, 1, 1, 4, 4)  # 13x13 -> 4x4 after 7x7/2, then 4x4
    assert not any(p.requires_grad for p in model.parameters())  # weights never trained
    x, y = next(task.weight_batches(0))
    assert x.shape == (100, 1, 13, 13) and x.min() >= -1 and x.max() <= 1
    assert y.shape == (100,)


def test_loss_is_zero_iff_the_teacher_architecture():
    sp, model, task = _space_model()
    t = teacher_genotype(model)
    assert task.evaluate(model, sp.discrete_mix(t))["loss"] == 0.0
    for e in range(10):
        other = list(t.choices)
        other[e] = (other[e] + 1) % 10
        assert task.evaluate(model, sp.discrete_mix(",".join(map(str, other))))["loss"] > 0


def test_batches_are_fresh_each_step_and_repeatable():
    sp, model, task = _space_model()
    a = [x for x, _ in task.weight_batches(3)]
    b = [x for x, _ in task.weight_batches(3)]
    assert len(a) == 100 and all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], next(task.arch_batches(3))[0])


def test_genotype_strings():
    sp, _, _ = _space_model()
    g = sp.parse("3,7,0,1,9,2,5,5,1,0")
    assert str(g) == "3,7,0,1,9,2,5,5,1,0"
    for bad in ["1,2", "a,b,c,d,e,f,g,h,i,j", "10,0,0,0,0,0,0,0,0,0"]:
        with pytest.raises(GenotypeError):
            sp.parse(bad)


def test_search_recovers_the_teacher_with_darts():
    res = archgrad.search(space="toy", strategy="darts", epochs=20, arch_lr=1e-3,
                          arch_betas=(0.9, 0.999), arch_weight_decay=0.0, device="cpu",
                          eval_every=0)
    assert res.final["derived_valid_loss"] == 0.0
    assert "derived_loss" in res.history[0] and res.final["gap_metric"] == "loss"


def test_toy_takes_no_dataset():
    with pytest.raises(ArchgradError, match="generates its own data"):
        archgrad.search(space="toy", dataset="digits", epochs=1)
