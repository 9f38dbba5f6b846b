"""RobustDARTS's diagnostics: the Hessian's dominant eigenvalue against the exact Hessian of a
tiny supernet, and early stopping on constructed histories, in a search and across resume."""
import json

import pytest
import torch

import archgrad
from archgrad.core.arch import Mix
from archgrad.core.collapse import EarlyStop, hessian_eigenvalue, power_iteration
from archgrad.errors import ArchgradError
from archgrad.methods import make_strategy
from archgrad.spaces import get_space


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eigenvalue_is_the_exact_hessians_dominant_one(seed):
    torch.manual_seed(seed)
    # batch statistics only (no running statistics to restore between evaluations)
    sp = get_space("nb201", C=2, N=1, fused=False, track_running_stats=False)
    model = sp.supernet().double()
    strat = make_strategy("darts", init_scale=1.0)  # logits spread: a non-trivial Hessian
    strat.setup(sp.choices(), model, seed=seed)
    strat.arch.double()
    x, y = sp.example_batch(8, torch.Generator().manual_seed(seed))
    x = x.double()
    model.train()
    arch = strat.arch
    theta = arch.theta["cell"]

    def loss_flat(t):
        p = torch.softmax(t.view(theta.shape), -1)
        return sp.loss(model(x, Mix({"cell": p}, arch.dense_active())), y)

    H = torch.autograd.functional.hessian(loss_flat, theta.detach().flatten().clone())
    ev = torch.linalg.eigvalsh((H + H.T) / 2)
    want = float(ev[ev.abs().argmax()])
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    got = hessian_eigenvalue(model, arch, sp.loss, (x, y), iters=500, seed=seed)
    assert got == pytest.approx(want, rel=2e-3, abs=1e-6), (got, want, ev[-3:])
    # the probe leaves the batch-norm statistics as they were
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())


def test_power_iteration_on_a_known_matrix():
    A = torch.diag(torch.tensor([3.0, -7.0, 1.0, 0.5]))
    lam = power_iteration(lambda v: [A @ v[0]], [(4,)], torch.Generator().manual_seed(0),
                          iters=500, tol=1e-10)
    assert lam == pytest.approx(-7.0, rel=1e-6)


def _history(eigs):
    return [{"epoch": i + 1, "hessian_eig": e, "genotype": f"g{i + 1}"}
            for i, e in enumerate(eigs)]


@pytest.mark.parametrize("eigs,fires_at,back", [
    ([1.0] * 10 + [1.5] * 5, 14, 9),           # 1.4 = (1 + 4 x 1.5) / 5 > 1.3 at epoch 14
    ([1.0] * 10 + [1.2] * 5, None, None),      # 1.2: not enough
    ([1.0] * 4 + [2.0] * 5, None, None),       # before epoch 10: never
    ([1.0] * 12 + [1.0, 1.0, 4.0, 4.0, 4.0], 15, 10),  # (4 x 1 + 4) / 5 = 1.6 at epoch 15
])
def test_darts_es_fires_where_the_history_says(eigs, fires_at, back):
    es = EarlyStop("eigenvalue", window=5, factor=1.3, start=10)
    fired = None
    hist = _history(eigs)
    for i, rec in enumerate(hist):
        out = es.end_epoch(None, None, hist[:i], rec)
        if out:
            fired = (rec["epoch"], out)
            break
    if fires_at is None:
        assert fired is None
    else:
        assert fired[0] == fires_at and fired[1]["stop_genotype"] == f"g{back}"
        assert fired[1]["stop_epoch"] == back and "eigenvalue" in fired[1]["stopped"]


def test_skip_rule_and_its_bad_input():
    es = EarlyStop("skips", start=2, max_skips=2)
    assert es.end_epoch(None, None, [], {"epoch": 1, "skip_connects": 5, "genotype": "a"}) == {}
    assert es.end_epoch(None, None, [], {"epoch": 2, "skip_connects": 1, "genotype": "a"}) == {}
    out = es.end_epoch(None, None, [], {"epoch": 3, "skip_connects": 2, "genotype": "b"})
    assert out["stop_genotype"] == "b"
    with pytest.raises(ArchgradError, match="hessian_every 1"):
        make_strategy("darts", early_stop="eigenvalue", hessian_every=2)


def test_a_stopped_search_says_why_and_resumes_to_the_same_result(tmp_path):
    kw = dict(space="nb201", strategy="darts", dataset="synthetic", C=4, N=1, batch_size=16,
              epochs=6, device="cpu", eval_every=0,
              strategy_options={"early_stop": "skips", "es_start": 2, "es_skips": 1,
                                "hessian_every": 1, "hessian_iters": 3})
    res = archgrad.search(out=tmp_path / "a", **kw)
    assert res.final["stopped"].startswith("skips") and len(res.history) < 6
    assert all("hessian_eig" in h for h in res.history)
    stopped = res.history[-1]["epoch"]
    assert res.final["stopped_after_epoch"] == stopped and str(res.genotype) == \
        res.history[-1]["stop_genotype"]
    # a run stopped before writing its result: resume finishes it without another epoch
    (tmp_path / "a" / "result.json").unlink()
    again = archgrad.search(resume=tmp_path / "a")
    assert len(again.history) == stopped and str(again.genotype) == str(res.genotype)
    saved = json.loads((tmp_path / "a" / "result.json").read_text())
    assert saved["stopped"] == res.final["stopped"]


def test_compare_plots_the_eigenvalue(tmp_path, monkeypatch):
    from archgrad.experiments import report
    kw = dict(space="nb201", strategy="darts", dataset="synthetic", C=4, N=1, batch_size=16,
              epochs=2, device="cpu", eval_every=0,
              strategy_options={"hessian_every": 1, "hessian_iters": 2})
    archgrad.search(out=tmp_path / "r", **kw)
    titles = []
    real = report.plot

    def spy(runs, path):
        import matplotlib.axes
        orig = matplotlib.axes.Axes.set_title
        monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                            lambda self, t, **k: (titles.append(t), orig(self, t, **k))[1])
        return real(runs, path)
    monkeypatch.setattr(report, "plot", spy)
    report.compare([tmp_path / "r"], tmp_path / "cmp")
    assert any("Hessian eigenvalue" in t for t in titles)


# ---- DARTS-PT's perturbation-based selection ----------------------------------------------------
def _pt_setup(space_name, seed, **space):
    from archgrad.data import load_dataset
    from archgrad.engine.task import ImageTask
    from archgrad.search import with_space_defaults
    from archgrad.spaces import SPACES
    torch.manual_seed(seed)
    strat = make_strategy("darts", init_scale=1.0, derive="perturbation", pt_tune_epochs=0.0)
    data = load_dataset("synthetic", subset=64)  # a validation half of 32 examples
    opts = with_space_defaults(SPACES.get(space_name), {**space, "num_classes":
                                                         data.num_classes}, strat)
    sp = get_space(space_name, **opts)
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=seed)
    task = ImageTask(data, 16, seed, "cpu", sp.loss)
    return strat, sp, model, task


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbation_selection_matches_a_brute_force_replay(seed):
    """Every decision of DARTS-PT (no fine-tuning) replayed by hand: each candidate removed in
    turn from the supernet as decided so far, the validation accuracy measured, the kept one
    the candidate whose removal leaves the lowest accuracy; on the DARTS cell also the inputs
    kept per node."""
    from archgrad.core.selection import perturbation_select
    for space_name, space in (("nb201", {"C": 4, "N": 1}),
                              ("darts", {"C": 4, "layers": 3, "steps": 2, "multiplier": 2})):
        strat, sp, model, task = _pt_setup(space_name, seed, **space)
        geno, rec = perturbation_select(sp, model, strat, task, tune_epochs=0, examples=32,
                                        seed=seed)
        arch = strat.arch
        w = {k: v.clone() for k, v in arch.probs_detached().items()}

        def acc(weights):
            act = {lab: [tuple(k for k in range(weights[lab].shape[1])
                               if not g.skip_mask[k] and float(weights[lab][e, k]) != 0)
                         for e in range(weights[lab].shape[0])]
                   for lab, g in arch.groups.items()}
            return task.evaluate(model, Mix(weights, act), limit=32)["acc"]

        for d in rec["decisions"]:
            if "edge" in d:
                label, e = d["edge"]
                ops = arch.groups[label].ops
                got = {}
                for k, op in enumerate(ops):
                    v = {kk: t.clone() for kk, t in w.items()}
                    v[label][e, k] = 0.0
                    got[op] = acc(v)
                assert got == pytest.approx(d["acc_without"])
                assert d["kept"] == min(ops, key=lambda o: (got[o], ops.index(o)))
                w[label][e] = torch.zeros(len(ops))
                w[label][e, ops.index(d["kept"])] = 1.0
            else:
                label, node = d["node"]
                es = arch.groups[label].incoming()[node]
                got = {}
                for e in es:
                    v = {kk: t.clone() for kk, t in w.items()}
                    v[label][e] = 0.0
                    got[e] = acc(v)
                assert sorted(sorted(es, key=lambda e: (got[e], e))[:2]) == d["inputs"]
                for e in es:
                    if e not in d["inputs"]:
                        w[label][e] = 0.0
        assert str(geno) == str(sp.derive(w))
        if space_name == "darts":
            assert any("node" in d for d in rec["decisions"])


def test_a_search_derives_by_perturbation_and_says_so():
    r = archgrad.search(space="nb201", strategy="gdas", dataset="synthetic", C=4, N=1,
                        batch_size=16, epochs=1, device="cpu", eval_every=0, subset=64,
                        strategy_options={"derive": "perturbation", "pt_tune_epochs": 0.5})
    assert r.final["derive"] == "perturbation" and len(r.final["perturbation"]["decisions"]) == 6
    assert r.final["perturbation"]["tune_steps"] > 0


# ---- DARTS-ADA ------------------------------------------------------------------------------------
def _ada_run(tmp_path, name, monkeypatch, interrupt_after=None, resume=False):
    """A search whose eigenvalues are constructed: 1 up to epoch 4, then 2, so that DARTS-ES's
    rule (window 2, factor 1.3) fires at epoch 5 after each going back, until the weight decay
    reaches its maximum."""
    from archgrad.core import collapse
    calls = {"n": 0}

    def probe(self, strategy, task, history, record):
        calls["n"] += 1
        return {"hessian_eig": 1.0 if record["epoch"] <= 4 else 2.0}
    monkeypatch.setattr(collapse.EigenProbe, "end_epoch", probe)
    seen = []

    def cb(record, live):
        seen.append(record)
        if interrupt_after is not None and len(seen) == interrupt_after:
            raise KeyboardInterrupt
    if resume:
        return archgrad.search(resume=tmp_path / name, callbacks=[cb]), seen, calls
    kw = dict(space="nb201", strategy="darts", dataset="synthetic", C=4, N=1, batch_size=16,
              epochs=6, device="cpu", eval_every=0,
              strategy_options={"early_stop": "ada", "es_start": 0, "es_window": 2,
                                "ada_factor": 3.0, "ada_max_weight_decay": 2.7e-3})
    return archgrad.search(out=tmp_path / name, callbacks=[cb], **kw), seen, calls


def test_darts_ada_goes_back_raises_the_weight_decay_and_stops_going_back_at_its_maximum(
        tmp_path, monkeypatch):
    res, seen, calls = _ada_run(tmp_path, "a", monkeypatch)
    # fired at epoch 5 (eigenvalues 1,1,1,1,2: the last two's mean 1.5 > 1.3 x 1), back to
    # epoch 3 (the architecture DARTS-ES returns), 3e-4 -> 9e-4; again at epoch 5 -> 2.7e-3, the
    # maximum: then the rule no longer fires
    backs = [r for r in seen if "rollback_to" in r]
    assert [(r["epoch"], r["rollback_to"]) for r in backs] == [(5, 3), (5, 3)]
    assert [r["ada"]["weight_decay"] for r in backs] == pytest.approx([9e-4, 2.7e-3])
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5, 6]  # cut, and run again
    assert len(res.history[2]["ada"]) == 2 and "rollback_to" not in res.history[-1]
    assert res.history[-1]["weight_decay"] == pytest.approx(2.7e-3)
    assert calls["n"] == 6 + 2 * 2  # epochs 4 and 5 ran again after each going back
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("cut", [5, 6, 8])
def test_darts_ada_resumes_to_the_same_result(tmp_path, monkeypatch, cut):
    """Interrupted at the epoch that goes back (its callback runs after it went back), one
    epoch later, or after the second going back: resumed, the history and the genotype of the
    run without interruption."""
    full, _, _ = _ada_run(tmp_path, "full", monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _ada_run(tmp_path, "cut", monkeypatch, interrupt_after=cut)
    again, _, _ = _ada_run(tmp_path, "cut", monkeypatch, resume=True)
    assert str(again.genotype) == str(full.genotype)

    def strip(h):
        return [{k: v for k, v in r.items() if k != "time_s"} for r in h]
    assert strip(again.history) == strip(full.history)
