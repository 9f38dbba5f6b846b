import contextlib
import importlib
import os

import pytest
import torch

# one thread per pytest-xdist worker (they share the cores), else at most two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else
                      min(2, torch.get_num_threads()))
# processes the tests start (the CLI, sweep workers) compute with as many threads as the test
# process does: float results that a test compares then agree bit for bit
os.environ["ARCHGRAD_THREADS"] = str(torch.get_num_threads())


@pytest.fixture(autouse=True)
def _default_dtype():
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"


def write_tiny_corpus(root, words=40, tokens=(3000, 600, 600), seed=0, layout="ptb"):
    """A small word-level corpus in PTB's format (one sentence per line, a leading space),
    generated from a fixed random bigram chain so that a language model has something to
    learn. ``layout``: 'ptb' (ptb.{train,valid,test}.txt), 'sub' (ptb/ptb.*.txt) or 'penn'
    (penn/{train,valid,test}.txt, DARTS's)."""
    import random
    from pathlib import Path
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(words)]
    nxt = {w: rng.sample(vocab, 3) for w in vocab}
    root = Path(root)
    folder = {"ptb": root, "sub": root / "ptb", "penn": root / "penn"}[layout]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), tokens):
        lines, w, line = [], rng.choice(vocab), []
        for _ in range(n):
            line.append(w)
            if len(line) >= rng.randint(5, 15):
                lines.append(" " + " ".join(line) + " ")
                line = []
            w = rng.choice(nxt[w])
        lines.append(" " + " ".join(line) + " ")
        name = f"{split}.txt" if layout == "penn" else f"ptb.{split}.txt"
        (folder / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def ptb_dir(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("ptb"))


def run_cli(capsys, *argv):
    """archgrad's command line in this process: (exit status, stdout, stderr)."""
    from archgrad.cli import main
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.contextmanager
def interrupt_training_after(checkpoints: int):
    """archgrad.train interrupted (KeyboardInterrupt) right after its N-th checkpoint."""
    T = importlib.import_module("archgrad.train")
    real = T.save_checkpoint
    calls = {"n": 0}

    def save_then_stop(path, state, **kw):
        real(path, state, **kw)
        calls["n"] += 1
        if calls["n"] == checkpoints:
            raise KeyboardInterrupt

    T.save_checkpoint = save_then_stop
    try:
        yield
    finally:
        T.save_checkpoint = real
