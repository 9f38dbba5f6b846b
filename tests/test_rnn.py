"""The recurrent spaces and language modelling: the corpus, the cells against the official
equations computed step by step, truncated BPTT, DARTS's variable window length and its
learning-rate scaling, parameter counts, search / train / resume on PTB-like data."""
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import interrupt_training_after, write_tiny_corpus

import archgrad
from archgrad.core.arch import Mix
from archgrad.data.text import StateBox, Stream, Window, read_ptb, seq_lengths
from archgrad.errors import ArchgradError
from archgrad.methods import make_strategy
from archgrad.spaces import get_space

NODROP = dict(dropout=0.0, dropouth=0.0, dropoutx=0.0, dropouti=0.0, dropoute=0.0)


# -- the corpus ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["ptb", "sub", "penn"])
def test_corpus_layouts_and_vocabulary(tmp_path, layout):
    write_tiny_corpus(tmp_path, words=30, layout=layout)
    c = read_ptb(tmp_path)
    words = {w for f in tmp_path.rglob("*.txt") for w in f.read_text().split()}
    assert "<eos>" in c.vocab and c.vocab_size == len(words) + 1
    assert len(c.train) > len(c.valid) > 0
    sub = read_ptb(tmp_path, subset=100)
    assert len(sub.train) == len(sub.valid) == len(sub.test) == 100
    assert sub.vocab == c.vocab  # the vocabulary always comes from the whole corpus


def test_missing_corpus_is_one_line_naming_the_files(tmp_path):
    with pytest.raises(ArchgradError) as e:
        read_ptb(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "ptb.train.txt" in msg and "penn/train.txt" in msg


def test_real_ptb_vocabulary_when_present():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"
    if not (root / "ptb.train.txt").is_file():
        pytest.skip("no Penn Treebank here")
    assert read_ptb(root, subset=10).vocab_size == 10000


# -- the cells against the official equations ----------------------------------------------------
def _darts_search_reference(net, x_emb, h, probs, steps):
    """rnn/model_search.py's cell, one time step, written out (training mode, no dropout)."""
    xh = torch.cat([x_emb, h], -1) @ net.W0
    c0, h0 = xh.split(net.nhid, -1)
    s0 = h + c0.sigmoid() * (h0.tanh() - h)
    s0 = F.batch_norm(s0, None, None, training=True)
    states = s0.unsqueeze(0)
    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "identity": lambda t: t}
    ops = ("none", "tanh", "relu", "sigmoid", "identity")
    offset = 0
    for i in range(steps):
        ch = states.reshape(-1, net.nhid) @ net.Ws[i]
        ch = ch.view(i + 1, -1, 2 * net.nhid)
        c, hh = ch.split(net.nhid, -1)
        c = c.sigmoid()
        s = torch.zeros_like(s0)
        for k, name in enumerate(ops):
            if name == "none":
                continue
            unweighted = states + c * (acts[name](hh) - states)
            s = s + (probs[offset:offset + i + 1, k].view(-1, 1, 1) * unweighted).sum(0)
        s = F.batch_norm(s, None, None, training=True)
        states = torch.cat([states, s.unsqueeze(0)], 0)
        offset += i + 1
    return states[-steps:].mean(0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_darts_search_cell_matches_the_official_equations(seed):
    torch.manual_seed(seed)
    sp = get_space("darts-rnn", ninp=6, nhid=6, vocab_size=11, steps=4, **NODROP)
    net = sp.supernet().double()
    net.train()
    g = sp.choices()[0]
    probs = torch.randn(g.shape, dtype=torch.float64).softmax(-1)
    x = torch.randn(5, 6, dtype=torch.float64)
    h = torch.randn(5, 6, dtype=torch.float64)
    got = net.cell_step(x, h, Mix({g.label: probs}), None)
    want = _darts_search_reference(net, x, h, probs, 4)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2", "ENAS"])
def test_darts_genotype_cell_matches_the_official_equations(name):
    torch.manual_seed(0)
    sp = get_space("darts-rnn", vocab_size=11, eval_ninp=6, eval_nhid=6, **NODROP)
    net = sp.build(name).double()
    geno = archgrad.spaces.rnn.named_rnn_genotype(name)
    x = torch.randn(3, 6, dtype=torch.float64)
    h = torch.randn(3, 6, dtype=torch.float64)
    # rnn/model.py DARTSCell.cell
    c0, h0 = (torch.cat([x, h], -1) @ net.W0).split(6, -1)
    states = [h + c0.sigmoid() * (h0.tanh() - h)]
    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
            "identity": lambda t: t}
    for i, (op, pred) in enumerate(geno.recurrent):
        sp_ = states[pred]
        c, hh = (sp_ @ net.Ws[i]).split(6, -1)
        states.append(sp_ + c.sigmoid() * (acts[op](hh) - sp_))
    want = torch.stack([states[i] for i in geno.concat]).mean(0)
    assert torch.allclose(net.cell_step(x, h, None, None), want, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_advantage_cell_matches_the_official_equations(seed):
    torch.manual_seed(seed)
    sp = get_space("advantagenas-rnn", nhid=5, vocab_size=9, dropout=0.0)
    net = sp.supernet().double()
    g = sp.choices()[0]
    w = torch.randn(g.shape, dtype=torch.float64).softmax(-1)
    x = torch.randn(4, 5, dtype=torch.float64)
    h = torch.randn(4, 5, dtype=torch.float64)
    m = net.init_maps
    c0 = torch.sigmoid(m[0](h) + m[2](x))
    h0 = torch.tanh(m[1](h) + m[3](x))
    nodes = [h + c0 * (h0 - h)]
    f = {"identity": lambda t: t, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
         "relu": torch.relu, "zero": torch.zeros_like}
    e = 0
    for i in range(1, 4):
        acc = 0
        for j in range(i):
            n = nodes[j]
            c = torch.sigmoid(net.lc[e](n))
            y = sum(w[e, k] * f[op](net.lh[e](n)) for k, op in enumerate(g.ops))
            acc = acc + n + c * (y - n)
            e += 1
        nodes.append(acc / i)
    want = torch.stack(nodes[1:]).mean(0)
    assert torch.allclose(net.cell_step(x, h, Mix({g.label: w}), None), want, atol=1e-12)


def test_parameter_counts_equal_the_official_code():
    assert sum(p.numel() for p in archgrad.build("darts-rnn", "DARTS_V2").parameters()) \
        == 22_960_000
    assert sum(p.numel() for p in archgrad.build("darts-rnn", "DARTS_V1").parameters()) \
        == 22_960_000
    # search network 300/300: tied embedding 10000 x 300, decoder bias, W0 600 x 600,
    # 8 maps 300 x 600
    assert sum(p.numel() for p in archgrad.supernet("darts-rnn").parameters()) == \
        10000 * 300 + 10000 + 600 * 600 + 8 * 300 * 600


# -- truncated BPTT and the window lengths -------------------------------------------------------
def test_hidden_state_is_carried_and_detached():
    torch.manual_seed(0)
    sp = get_space("darts-rnn", ninp=4, nhid=4, vocab_size=20, steps=2)
    net = sp.supernet()
    g = sp.choices()[0]
    mix = Mix({g.label: torch.full(g.shape, 0.2, requires_grad=True)})
    stream = Stream(torch.randint(0, 20, (400,)), 4, "cpu", 10)
    box = StateBox()
    x1, _ = stream.window(0, 10, box)
    assert x1.state_in is None
    out = net(x1, mix)
    assert box.value is not None and not box.value.requires_grad
    assert torch.equal(box.value, out.hidden[-1].detach())
    x2, _ = stream.window(10, 10, box)
    assert x2.state_in is box.value
    # the second window's loss does not reach back into the first window's graph
    loss = net(x2, mix).log_probs.sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_variable_window_lengths_follow_darts():
    lens = seq_lengths(100_000, 35, seed=3)
    assert set(lens[:-1]) == {35, 17}
    share = lens.count(17) / len(lens)
    assert 0.03 < share < 0.07  # probability 0.05
    assert sum(lens) == 100_000 - 1
    assert lens == seq_lengths(100_000, 35, seed=3)  # fixed per seed: exact resume
    assert set(seq_lengths(1000, 35, 0, variable=False)[:-1]) == {35}
    # rnn/train.py: a normal draw around it, at least 5, at most bptt + 20
    jit = seq_lengths(100_000, 35, seed=3, jitter=5.0)
    assert min(jit) >= 1 and max(jit) <= 55 and len(set(jit)) > 10


@pytest.mark.parametrize("n", [35, 17, 9])
def test_learning_rate_scales_with_the_window(n):
    strat = make_strategy("darts", lr=20.0, momentum=0.0, weight_decay=0.0)
    sp = get_space("darts-rnn", ninp=4, nhid=4, vocab_size=20, steps=2)
    model = sp.supernet()
    strat.setup(sp.choices(), model, seed=0)
    strat.set_lr(0, 10)
    seen = []
    real = strat.weight_opt.step

    def spy(*a, **k):
        seen.append(strat.weight_opt.param_groups[0]["lr"])
        return real(*a, **k)

    strat.weight_opt.step = spy
    toks = torch.randint(0, 20, (n + 1, 3))
    batch = (Window(toks[:-1], None, StateBox(), lr_scale=n / 35), toks[1:].reshape(-1))
    strat.step(batch, batch, loss_fn=sp.loss, epoch=0, epochs=10, step=0, steps_per_epoch=1)
    assert seen == [pytest.approx(20.0 * n / 35)]
    assert strat.weight_opt.param_groups[0]["lr"] == 20.0  # restored after the step


# -- search, train, resume -----------------------------------------------------------------------
TINY_SEARCH = dict(dataset="ptb", batch_size=8, device="cpu", ninp=8, nhid=8, steps=3)


def test_search_records_perplexities(ptb_dir, tmp_path):
    res = archgrad.search(space="darts-rnn", strategy="darts", epochs=2, data_dir=ptb_dir,
                          out=tmp_path / "s", **TINY_SEARCH)
    rec = res.history[-1]
    for k in ("train_ppl", "arch_ppl", "valid_ppl"):
        assert 1 < rec[k] < 1e4, k
    assert res.final["supernet_valid_ppl"] > 1
    text = (tmp_path / "s" / "genotype.txt").read_text()
    assert text.startswith("Genotype(recurrent=[")


@pytest.mark.parametrize("space,kw", [("darts-rnn", dict(ninp=8, nhid=8, steps=3)),
                                      ("advantagenas-rnn", dict(nhid=8, nodes=2))])
@pytest.mark.parametrize("strategy", ["darts", "advantage"])
def test_resume_is_exact_on_the_recurrent_spaces(ptb_dir, tmp_path, space, kw, strategy):
    common = dict(space=space, strategy=strategy, dataset="ptb", data_dir=ptb_dir,
                  batch_size=8, device="cpu", epochs=2, **kw)
    full = archgrad.search(out=tmp_path / "full", **common)

    def stop(record, live):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        archgrad.search(out=tmp_path / "cut", callbacks=[stop], **common)
    resumed = archgrad.search(resume=tmp_path / "cut")
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    assert str(resumed.genotype) == str(full.genotype)


def test_train_reports_perplexities_and_resumes_exactly(ptb_dir, tmp_path):
    kw = dict(dataset="ptb", data_dir=ptb_dir, device="cpu", eval_ninp=8, eval_nhid=8,
              vocab_size=41, batch_size=8, epochs=3)
    full = archgrad.train("darts-rnn", "DARTS_V2", out=tmp_path / "a", **kw)
    assert full["eval_batch_size"] == 10 and full["test_batch_size"] == 1
    assert full["test_ppl"] == pytest.approx(math.exp(full["test_loss"])) and full["test_ppl"] > 1
    assert all("valid_ppl" in r and "train_ppl" in r for r in full["history"])
    assert full["exported"] == "model.pt2"  # one time step per call (test_trust checks it)
    assert (tmp_path / "a" / "model.pt2").is_file()

    with interrupt_training_after(2), pytest.raises(KeyboardInterrupt):
        archgrad.train("darts-rnn", "DARTS_V2", out=tmp_path / "b", **kw)
    resumed = archgrad.train(None, None, resume=tmp_path / "b")
    assert resumed["test_ppl"] == full["test_ppl"]
    assert resumed["valid_ppl"] == full["valid_ppl"]


def test_asgd_switch_follows_nonmono(ptb_dir, monkeypatch):
    """DARTS switches to ASGD once the validation loss is above the best of all but the last
    ``nonmono`` epochs, and from then on validates with the averaged weights."""
    import archgrad.lmtrain as L

    from archgrad.data.text import read_ptb
    losses = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0, 1.9])
    seen_avg = []

    def fake_eval(model, stream, bptt):
        seen_avg.append(isinstance(opt_box[0], torch.optim.ASGD))
        v = next(losses)
        return {"loss": v, "ppl": float(torch.tensor(v).exp())}

    monkeypatch.setattr(L, "evaluate_stream", fake_eval)
    sp = get_space("darts-rnn", eval_ninp=4, eval_nhid=4, vocab_size=41)
    recipe = dict(sp.train_recipe(), nonmono=2, batch_size=8)
    tr = L.LMTrainer(read_ptb(ptb_dir), recipe, 0, "cpu")
    model = sp.build("DARTS_V2")
    opt_box = [tr.optimizer(model, 20.0)]
    recs = []
    for epoch in range(7):
        rec = {}
        opt_box[0] = tr.end_epoch(model, opt_box[0], epoch, 20.0, rec)
        recs.append(rec)
    # the check needs more than 2 earlier epochs: epoch 4: 3.5 > min([5]) no; epoch 5: 3.2 >
    # min([5, 4]) no; epoch 6: 3.1 > min([5, 4, 3]) yes -> ASGD from epoch 6 on
    assert [r.get("switched_to_asgd", False) for r in recs] == [False] * 5 + [True, False]
    assert [bool(r.get("asgd")) for r in recs] == [False] * 5 + [True, True]
    assert tr.asgd_epoch == 6 and isinstance(opt_box[0], torch.optim.ASGD)
    assert seen_avg == [False] * 6 + [True]  # validation with the averaged weights
    assert tr.best["epoch"] == 7 and tr.best["loss"] == 2.0


def test_averaged_weights_are_swapped_in_and_out():
    from archgrad.engine.lmtrain import averaged_weights
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.ASGD(net.parameters(), lr=0.1, t0=0, lambd=0.0)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    before = [p.detach().clone() for p in net.parameters()]
    with averaged_weights(net, opt):
        inside = [p.detach().clone() for p in net.parameters()]
        assert all(torch.equal(a, opt.state[p]["ax"]) for a, p in zip(inside, net.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(before, net.parameters()))


def test_image_options_are_refused_for_language_models(ptb_dir):
    with pytest.raises(ArchgradError, match="cutout applies to image networks only"):
        archgrad.train("darts-rnn", "DARTS_V2", dataset="ptb", data_dir=ptb_dir, cutout=16)
    with pytest.raises(ArchgradError, match="takes a text corpus"):
        archgrad.search(space="darts-rnn", dataset="digits", epochs=1)


def test_a_batch_of_one_is_refused_for_the_batch_normed_search_cell(ptb_dir, tmp_path):
    with pytest.raises(ArchgradError, match="batch norm needs a batch of at least 2"):
        archgrad.search(space="darts-rnn", dataset="ptb", data_dir=ptb_dir, batch_size=1,
                        epochs=1, ninp=8, nhid=8, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_cli_train_json_prints_perplexities(ptb_dir, tmp_path, capsys):
    from archgrad.cli import main
    rc = main(["train", "--space", "darts-rnn", "--genotype", "DARTS_V2", "--dataset", "ptb",
               "--data-dir", str(ptb_dir), "--channels", "8", "--batch-size", "8",
               "--epochs", "1", "--json", "--out", str(tmp_path / "t")])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["valid_ppl"] > 1 and res["test_ppl"] > 1 and res["test_batch_size"] == 1


def test_cli_search_prints_perplexities_per_epoch_and_at_the_end(ptb_dir, tmp_path, capsys):
    from archgrad.cli import main
    rc = main(["search", "--space", "darts-rnn", "--strategy", "gdas", "--dataset", "ptb",
               "--data-dir", str(ptb_dir), "--channels", "8", "--cells", "3", "--batch-size", "8",
               "--epochs", "1", "--out", str(tmp_path / "s")])
    assert rc == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/1 .*train_ppl \d+\.\d .*valid_ppl \d+\.\d", out)
    line = next(x for x in out.splitlines() if x.startswith("supernet valid"))
    # a sampled network per window of the validation stream, not per image batch
    assert re.match(r"supernet valid perplexity \d+\.\d\d on valid \(batch 10\) \(one "
                    r"architecture sampled .*a window of 35 tokens in 10 streams\), BN with each "
                    r"batch's statistics as in training\); derived "
                    r"architecture with the shared weights \d+\.\d\d with BN statistics recalibrated "
                    r"\(\S+ without\)$", line), line


@pytest.mark.parametrize("space,genotype", [
    ("darts-rnn", "DARTS_V2"),
    ("advantagenas-rnn", "|tanh~0|+|relu~0|sigmoid~1|+|identity~0|zero~1|tanh~2|")])
def test_the_recurrent_cells_are_drawn_with_their_inputs_and_every_op(space, genotype, tmp_path):
    from archgrad.experiments.plot import cell_graphs, draw
    g = archgrad.get_space(space).genotype(genotype)
    [(_, nodes, edges)] = cell_graphs(g)
    names = {n[0] for n in nodes}
    assert {"xt", "hp", "n0", "ht"} <= names
    assert ("xt", "n0", "") in edges and ("hp", "n0", "") in edges
    ops = sorted(op for _, _, op in edges if op)
    want = sorted(op for op, _ in g.recurrent) if space == "darts-rnn" else sorted(g.ops)
    assert ops == want
    draw(g, tmp_path / "cell")
    assert (tmp_path / "cell.png").stat().st_size > 0


def test_the_generated_corpus_is_fixed_complete_and_learnable():
    from archgrad.data import load_dataset
    a, b = load_dataset("synthetic-text"), load_dataset("synthetic-text")
    assert a.vocab == b.vocab and all(torch.equal(getattr(a, s), getattr(b, s))
                                      for s in ("train", "valid", "test"))
    assert a.vocab_size == 41 and "<eos>" in a.vocab
    assert (len(a.train), len(a.valid), len(a.test)) == (3000, 600, 600)
    assert set(a.train.tolist()) == set(range(41))  # every word appears in training
    eos = a.vocab.index("<eos>")
    succ: dict[int, set[int]] = {}
    for split in (a.train, a.valid, a.test):
        seq = split.tolist()
        for w, n in zip(seq, seq[1:]):
            if w != eos and n != eos:
                succ.setdefault(w, set()).add(n)
    assert max(len(s) for s in succ.values()) == 3  # a chain: three successors per word
    short = load_dataset("synthetic-text", subset=50)
    assert short.vocab == a.vocab and torch.equal(short.train, a.train[:50])
