"""Word-level language-modelling corpora (Penn Treebank) and their token streams.

Read from local files only: ``DIR/ptb.{train,valid,test}.txt`` (Mikolov's PTB), ``DIR/ptb/``
holding those, or DARTS's layout ``DIR/penn/{train,valid,test}.txt``. Each line's words are
followed by ``<eos>``; the vocabulary is built from the three splits in order (PTB: 10,000 words
with ``<eos>``), as the official DARTS ``data.Corpus``. ``subset`` keeps the first N tokens of
each split (cheap proxies; the vocabulary stays the corpus's, so the networks keep their size).

A :class:`Stream` is a split batchified into ``batch`` parallel columns (DARTS's ``batchify``)
cut into windows for truncated back-propagation through time; a :class:`Window` carries the
recurrent state in (the previous window's, detached) and records the state out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ArchgradError, DatasetNotFoundError

SPLITS = ("train", "valid", "test")
LAYOUTS = (("ptb.{}.txt", ""), ("ptb.{}.txt", "ptb"), ("{}.txt", "penn"))


@dataclass
class TextCorpus:
    """Token ids of the three splits and the vocabulary."""

    name: str
    vocab: list[str]
    train: Tensor
    valid: Tensor
    test: Tensor
    source: str = ""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def space_options(self) -> dict:
        """The options a space takes from this corpus."""
        return {"vocab_size": self.vocab_size}

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} / {len(self.valid)} / {len(self.test)} train / "
                f"valid / test tokens, {self.vocab_size} words ({self.source})")


def find_corpus(data_dir: Path | None) -> tuple[dict[str, Path], list[Path]]:
    """The split files under the data directory (or $ARCHGRAD_DATA, ./data)."""
    import os
    roots = [Path(data_dir).expanduser()] if data_dir is not None else \
        [Path(p).expanduser() for p in (os.environ.get("ARCHGRAD_DATA"), "data") if p]
    tried = []
    for root in roots:
        for pattern, sub in LAYOUTS:
            d = root / sub if sub else root
            files = {s: d / pattern.format(s) for s in SPLITS}
            tried.append(d)
            if all(f.is_file() for f in files.values()):
                return files, tried
    return {}, tried


def read_words(path: Path) -> list[str]:
    words = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words += line.split() + ["<eos>"]
    return words


def read_ptb(data_dir=None, subset: int | None = None) -> TextCorpus:
    files, tried = find_corpus(data_dir)
    if not files:
        where = ", ".join(str(t) for t in dict.fromkeys(tried))
        raise DatasetNotFoundError(
            f"ptb not found: expected ptb.train.txt, ptb.valid.txt, ptb.test.txt (or "
            f"penn/train.txt, penn/valid.txt, penn/test.txt) in {where}; pass --data-dir DIR "
            f"(or try --dataset synthetic-text, a generated corpus)")
    splits = {s: read_words(files[s]) for s in SPLITS}
    vocab, index = _index(splits)
    ids = {}
    for s in SPLITS:
        toks = splits[s][:subset] if subset is not None else splits[s]
        if len(toks) < 2:
            raise ArchgradError(f"the {s} split of {files[s]} has fewer than 2 tokens")
        ids[s] = torch.tensor([index[w] for w in toks], dtype=torch.long)
    return TextCorpus("ptb", vocab, ids["train"], ids["valid"], ids["test"],
                      str(files["train"].parent))


def _index(splits: dict[str, list[str]]) -> tuple[list[str], dict[str, int]]:
    """The vocabulary in order of first appearance, split by split (the official Corpus)."""
    vocab, index = [], {}
    for s in SPLITS:
        for w in splits[s]:
            if w not in index:
                index[w] = len(vocab)
                vocab.append(w)
    return vocab, index


def read_synthetic_text(data_dir=None, subset: int | None = None, words: int = 40,
                        tokens: tuple[int, int, int] = (3000, 600, 600),
                        seed: int = 0) -> TextCorpus:
    """A generated corpus for tests and tiny protocols (no files): sentences of 5 to 15 words
    from a fixed random chain in which each of ``words`` words is followed by one of 3 (every
    word reached, so ``words + 1`` in the vocabulary), each ending in ``<eos>``. Learnable: a
    bigram model of the training split has a test perplexity of about 5, a uniform guess
    ``words + 1``."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(words, generator=g)  # a word's 3 successors follow it in a random
    pos = torch.argsort(order)                  # cycle: every word is reached
    follow = torch.stack([order[(pos + k) % words] for k in (1, 2, 3)], 1)
    splits = {}
    for split, n in zip(SPLITS, tokens):
        out, w, left = [], int(torch.randint(words, (), generator=g)), 0
        while len(out) < n:
            if left == 0:
                left = int(torch.randint(5, 16, (), generator=g))
            out.append(f"w{w}")
            left -= 1
            if left == 0:
                out.append("<eos>")
            w = int(follow[w, int(torch.randint(3, (), generator=g))])
        splits[split] = out[:n]
    vocab, index = _index(splits)
    ids = {s: torch.tensor([index[w] for w in splits[s][:subset]], dtype=torch.long)
           for s in SPLITS}
    return TextCorpus("synthetic-text", vocab, ids["train"], ids["valid"], ids["test"],
                      f"generated: {words} words, seed {seed}")


def batchify(data: Tensor, batch: int) -> Tensor:
    """(T, batch) columns of a token sequence, the remainder dropped (DARTS's ``batchify``)."""
    n = data.size(0) // batch
    if n < 2:
        raise ArchgradError(f"a split of {data.size(0)} tokens is too short for batches of "
                            f"{batch}; use a smaller --batch-size or a larger --subset")
    return data[:n * batch].view(batch, n).t().contiguous()


@dataclass
class StateBox:
    """The recurrent state carried from one window of a stream to the next."""

    value: object = None


@dataclass
class Window:
    """A window of a stream: ``tokens`` (seq_len, batch) and the recurrent state carried in.
    A forward pass reads ``state_in`` and records ``state_out`` (detached); the stream hands
    ``state_out`` to the next window. ``lr_scale``: seq_len / bptt (DARTS scales the learning
    rate of a shorter window)."""

    tokens: Tensor
    state_in: object
    box: StateBox = field(repr=False, default_factory=StateBox)
    lr_scale: float = 1.0

    def record_state(self, state) -> None:
        self.box.value = _detach(state)

    @property
    def device(self):
        return self.tokens.device

    @property
    def shape(self):
        return self.tokens.shape

    def __len__(self) -> int:
        return self.tokens.size(0)


def _detach(state):
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        return type(state)(_detach(s) for s in state)
    return state


class Stream:
    """A batchified split walked in windows of ``bptt`` tokens (DARTS's ``get_batch``), the
    recurrent state carried across windows and reset at the start of every pass."""

    def __init__(self, data: Tensor, batch: int, device, bptt: int,
                 shard: tuple[int, int] = (0, 1)):
        cols = batchify(data, batch)
        rank, world = shard
        if world > 1:  # a data-parallel rank: its columns of the batch
            per = batch // world
            cols = cols[:, rank * per:(rank + 1) * per]
        self.data = cols.contiguous().to(device)
        self.batch, self.bptt = batch, bptt

    @property
    def length(self) -> int:
        return self.data.size(0)

    def window(self, i: int, seq_len: int, box: StateBox, lr_scale: float = 1.0):
        seq_len = min(seq_len, self.length - 1 - i)
        x = self.data[i:i + seq_len]
        y = self.data[i + 1:i + 1 + seq_len].reshape(-1)
        return Window(x, box.value, box, lr_scale), y


def seq_lengths(total: int, bptt: int, seed: int, variable: bool = True,
                jitter: float = 0.0, max_delta: int = 20) -> list[int]:
    """DARTS's window lengths over a stream of ``total`` rows: ``bptt`` with probability 0.95,
    else ``bptt / 2``, until the stream is used up (rnn/train_search.py takes it as ``int``;
    rnn/train.py draws the length from a normal around it, ``jitter`` = 5, at least 5 and at
    most ``bptt + max_delta``). Drawn from a generator seeded by ``seed`` so that an epoch's
    windows are fixed (and a resumed run gets the same)."""
    g = torch.Generator().manual_seed(seed)
    out, i = [], 0
    while i < total - 1 - 1:
        bp = bptt if (not variable or float(torch.rand(1, generator=g)) < 0.95) else bptt / 2.0
        if jitter and variable:
            n = max(5, int(bp + jitter * float(torch.randn(1, generator=g))))
            n = min(n, bptt + max_delta)
        else:
            n = int(bp)
        n = min(n, total - 1 - i)
        out.append(n)
        i += n
    return out


def no_step(train: Stream, tokens: int, batch: int, per_step: str) -> ArchgradError:
    """The error of a training stream too short for one step at this batch size."""
    return ArchgradError(f"the training split ({tokens} tokens) in {batch} sequences of "
                         f"{train.length} tokens gives no step: a step takes {per_step} of up "
                         f"to {train.bptt} tokens; use a smaller --batch-size or a larger "
                         f"--subset")


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))
