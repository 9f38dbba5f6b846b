"""Damage that leaves a file readable: bytes overwritten inside a checkpoint's tensors (caught by
the digest of its contents), run-directory files that parse but have the wrong shape, and image
folders holding files that are not images. Each is one line naming the file, exit 2."""
import json
import shutil
import struct
import zipfile

import pytest
import torch
from conftest import run_cli as run

import archgrad
from archgrad.errors import ArchgradError
from archgrad.runs.rundir import content_digest, load_checkpoint, previous_path, save_checkpoint

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
KW = dict(dataset="synthetic", C=4, N=1, batch_size=32, device="cpu")
TRAIN = ["--dataset", "synthetic", "--channels", "4", "--cells", "1", "--quiet", "--device",
         "cpu", "--epochs", "2"]


# ---- where a tensor's bytes lie in a checkpoint ------------------------------------------------
def _records(path):
    """(offset, size) of every tensor's bytes in a torch.save file (a zip of stored entries),
    largest first."""
    spans = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if "/data/" not in info.filename or info.file_size == 0:
                continue
            f.seek(info.header_offset)
            head = f.read(30)
            n, m = struct.unpack("<HH", head[26:30])
            spans.append((info.header_offset + 30 + n + m, info.file_size))
    return sorted(spans, key=lambda s: -s[1])


def _overwrite(path, offset, data: bytes):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _middle_of_largest(path):
    off, size = _records(path)[0]
    _overwrite(path, off + size // 2 - 8, b"\x7f" * 16)


def _last_bytes_of_largest(path):
    off, size = _records(path)[0]
    _overwrite(path, off + size - 4, b"\x00\x00\x00\x00")


def _one_bit_of_smallest(path):
    off, size = _records(path)[-1]
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x01]))


def _every_record_once(path):
    for off, size in _records(path):
        _overwrite(path, off + size // 2, b"\x55")


def _digest_altered(path):
    """The digest itself edited (same length, so the file still loads)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    d = ck["digest"].encode()
    blob = bytearray(open(path, "rb").read())
    i = blob.find(d)
    assert i > 0
    blob[i] = ord("0") if d[0:1] != b"0" else ord("1")
    open(path, "wb").write(bytes(blob))


def _edited_keeping_the_digest(path):
    """Loaded, one number changed, saved again with the digest it had."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    ck["history"][-1]["epoch"] = ck["history"][-1]["epoch"] + 7
    torch.save(ck, path)


DAMAGE = {"middle of the largest tensor": _middle_of_largest,
          "last bytes of the largest tensor": _last_bytes_of_largest,
          "one bit of the smallest tensor": _one_bit_of_smallest,
          "a byte of every tensor": _every_record_once,
          "the digest edited": _digest_altered}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    d = tmp_path_factory.mktemp("searched") / "r"
    res = archgrad.search(epochs=2, out=d, **KW)
    return d, res


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from archgrad.cli import main
    d = tmp_path_factory.mktemp("trained") / "t"
    assert main(["train", "--genotype", BEST, *TRAIN, "--out", str(d)]) == 0
    return d


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_inside_a_search_checkpoint_is_named_with_its_fallback(capsys, tmp_path,
                                                                     searched, damage):
    src, _ = searched
    d = tmp_path / "r"
    shutil.copytree(src, d)
    (d / "result.json").unlink()  # unfinished, so that resume reads the checkpoint
    torch.load(d / "checkpoint.pt", weights_only=True)  # loads before the damage ...
    DAMAGE[damage](d / "checkpoint.pt")
    torch.load(d / "checkpoint.pt", weights_only=True)  # ... and after it: only the digest tells
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}
    code, out, err = run(capsys, "search", "--resume", str(d), "--quiet")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "checkpoint.pt is damaged" in err and "checkpoint.prev.pt" in err, err
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before


def test_a_checkpoint_edited_but_saved_with_its_old_digest_is_refused(capsys, tmp_path, searched):
    src, _ = searched
    d = tmp_path / "r"
    shutil.copytree(src, d)
    (d / "result.json").unlink()
    _edited_keeping_the_digest(d / "checkpoint.pt")
    code, _, err = run(capsys, "search", "--resume", str(d), "--quiet")
    assert code == 2 and "do not match the digest" in err, err


def test_falling_back_to_the_kept_checkpoint_ends_as_the_undamaged_run(capsys, tmp_path, searched):
    src, full = searched
    d = tmp_path / "r"
    shutil.copytree(src, d)
    (d / "result.json").unlink()
    _middle_of_largest(d / "checkpoint.pt")
    code, _, err = run(capsys, "search", "--resume", str(d), "--quiet")
    assert code == 2
    hint = err.split("`mv ")[1].split("`")[0].split()
    shutil.move(hint[0], hint[1])  # what the line says to do
    resumed = archgrad.search(resume=d)
    assert resumed.genotype == full.genotype
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.history]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in full.history]
    a, b = load_checkpoint(src / "checkpoint.pt"), load_checkpoint(d / "checkpoint.pt")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


@pytest.mark.parametrize("damage", ["middle of the largest tensor", "the digest edited"])
def test_damage_inside_a_training_checkpoint_is_named(capsys, tmp_path, trained, damage):
    d = tmp_path / "t"
    shutil.copytree(trained, d)
    (d / "train_result.json").unlink()
    DAMAGE[damage](d / "train_checkpoint.pt")
    code, _, err = run(capsys, "train", "--resume", str(d), "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "train_checkpoint.pt is damaged" in err and "train_checkpoint.prev.pt" in err, err


@pytest.mark.parametrize("damage", ["middle of the largest tensor", "one bit of the smallest tensor",
                                    "the digest edited"])
def test_damage_inside_a_model_file_is_named(capsys, tmp_path, trained, damage):
    d = tmp_path / "t"
    shutil.copytree(trained, d)
    DAMAGE[damage](d / "model.pt")
    with pytest.raises(ArchgradError, match="model.pt is damaged"):
        archgrad.load_model(d / "model.pt")
    code, _, err = run(capsys, "export", str(d), "--out", str(tmp_path / "m"))
    assert code == 2 and "model.pt is damaged" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_digest_sees_every_kind_of_value_and_only_content(seed, tmp_path):
    g = torch.Generator().manual_seed(seed)
    state = {"w": torch.randn(5, 3, generator=g), "i": torch.randint(0, 9, (4,), generator=g),
             "h": torch.randn(3, generator=g).half(), "b": torch.randn(2, generator=g).bfloat16(),
             "s": torch.tensor(1.5), "e": torch.zeros(0), "opt": {0: {"m": torch.ones(2)}},
             "hist": [{"loss": 0.25, "g": "x", "none": None, "ok": True}], "t": (1, 2.0)}
    base = content_digest(state)
    save_checkpoint(tmp_path / "c.pt", state)
    assert content_digest(load_checkpoint(tmp_path / "c.pt")) == base  # survives a round trip
    view = {**state, "w": state["w"].t().contiguous().t()}  # another memory layout, same values
    assert content_digest(view) == base
    changes = [("w", state["w"].clone().index_put_((torch.tensor(seed % 5),), torch.zeros(3))),
               ("i", state["i"] + 1), ("h", state["h"] * 2), ("b", -state["b"]),
               ("s", torch.tensor(1.5000001)), ("e", torch.zeros(1)),
               ("opt", {1: {"m": torch.ones(2)}}), ("hist", [{"loss": 0.2500001, "g": "x",
                                                                "none": None, "ok": True}]),
               ("t", [1, 2.0]), ("w", state["w"].double()), ("w", state["w"].reshape(3, 5))]
    for key, value in changes:
        assert content_digest({**state, key: value}) != base, key


def test_saving_with_keep_previous_keeps_the_file_it_replaces(tmp_path):
    p = tmp_path / "checkpoint.pt"
    save_checkpoint(p, {"epoch": 0}, keep_previous=True)
    assert not previous_path(p).exists()
    save_checkpoint(p, {"epoch": 1}, keep_previous=True)
    save_checkpoint(p, {"epoch": 2}, keep_previous=True)
    assert load_checkpoint(p)["epoch"] == 2 and load_checkpoint(previous_path(p))["epoch"] == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


def test_a_checkpoint_without_a_digest_still_loads(tmp_path):
    """Files written before digests existed."""
    torch.save({"epoch": 3, "model": {"w": torch.ones(2)}}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", required=("epoch",))["epoch"] == 3


# ---- files that parse but have the wrong shape ------------------------------------------------
def _json_edit(name, fn):
    def edit(d):
        obj = json.loads((d / name).read_text())
        (d / name).write_text(json.dumps(fn(obj)))
    return edit


def _metrics_edit(fn):
    def edit(d):
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fn(rows)))
    return edit


SHAPES = {
    "result a list": ("result.json", _json_edit("result.json", lambda r: [r])),
    "result a number": ("result.json", _json_edit("result.json", lambda r: 3)),
    "result without genotype": ("result.json", _json_edit(
        "result.json", lambda r: {k: v for k, v in r.items() if k != "genotype"})),
    "result genotype a number": ("result.json", _json_edit(
        "result.json", lambda r: {**r, "genotype": 5})),
    "result entropy a string": ("result.json", _json_edit(
        "result.json", lambda r: {**r, "entropy": "high"})),
    "result benchmark a list": ("result.json", _json_edit(
        "result.json", lambda r: {**r, "benchmark": [1, 2]})),
    "metrics record a list": ("metrics.jsonl", _metrics_edit(lambda rows: rows + [[1, 2]])),
    "metrics epoch a string": ("metrics.jsonl", _metrics_edit(
        lambda rows: [{**rows[0], "epoch": "1"}] + rows[1:])),
    "metrics loss a dict": ("metrics.jsonl", _metrics_edit(
        lambda rows: [{**rows[0], "train_loss": {"a": 1}}] + rows[1:])),
    "config search a list": ("config.json", _json_edit(
        "config.json", lambda c: {**c, "search": [c["search"]]})),
    "config without strategy": ("config.json", _json_edit(
        "config.json", lambda c: {**c, "search": {k: v for k, v in c["search"].items()
                                                  if k != "strategy"}})),
    "config epochs a string": ("config.json", _json_edit(
        "config.json", lambda c: {**c, "search": {**c["search"], "epochs": "2"}})),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_compare_skips_a_run_whose_file_has_the_wrong_shape(capsys, tmp_path, searched, case):
    src, _ = searched
    shutil.copytree(src, tmp_path / "good")
    shutil.copytree(src, tmp_path / "bad")
    name, edit = SHAPES[case]
    edit(tmp_path / "bad")
    code, out, err = run(capsys, "compare", str(tmp_path / "good"), str(tmp_path / "bad"),
                         "--out", str(tmp_path / "cmp"))
    assert code == 0 and "(1 run)" in out, err
    assert f"skipped {tmp_path / 'bad'} ({name} is damaged)" in out, out
    code, out, err = run(capsys, "compare", str(tmp_path / "bad"), "--out", str(tmp_path / "c2"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err, err
    assert not (tmp_path / "c2.md").exists()


@pytest.mark.parametrize("case", [c for c in SHAPES if c.startswith("result")])
def test_load_result_refuses_a_result_of_the_wrong_shape(tmp_path, searched, case):
    src, _ = searched
    shutil.copytree(src, tmp_path / "r")
    SHAPES[case][1](tmp_path / "r")
    with pytest.raises(ArchgradError, match="result.json is damaged"):
        archgrad.load_result(tmp_path / "r")


@pytest.mark.parametrize("case", ["result a list", "result genotype a number"])
def test_resuming_a_finished_run_with_a_result_of_the_wrong_shape(capsys, tmp_path, searched,
                                                                  case):
    src, _ = searched
    shutil.copytree(src, tmp_path / "r")
    SHAPES[case][1](tmp_path / "r")
    code, _, err = run(capsys, "search", "--resume", str(tmp_path / "r"), "--quiet")
    assert code == 2 and "result.json" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("value", [[1], "done", {"test_acc": "high"}, {"history": 3}])
def test_resuming_a_finished_training_with_a_result_of_the_wrong_shape(capsys, tmp_path,
                                                                       trained, value):
    shutil.copytree(trained, tmp_path / "t")
    (tmp_path / "t" / "train_result.json").write_text(json.dumps(value))
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "t"), "--quiet")
    assert code == 2 and "train_result.json is damaged" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("sweep_json", [[1, 2], {"runs": 3}, {"runs": [1]}, {"runs": [{"x": 1}]},
                                        {"meta": {}}])
def test_a_sweep_file_of_the_wrong_shape_is_one_line(capsys, tmp_path, sweep_json):
    d = tmp_path / "sw"
    (d / "runs").mkdir(parents=True)
    (d / "sweep.json").write_text(json.dumps(sweep_json))
    code, _, err = run(capsys, "report", str(d))
    assert code == 2 and "sweep.json is damaged" in err and len(err.strip().splitlines()) == 1, err


def test_an_empty_metrics_file_is_said_beside_the_final_figures(capsys, tmp_path, searched):
    src, _ = searched
    shutil.copytree(src, tmp_path / "r")
    (tmp_path / "r" / "metrics.jsonl").write_text("")
    code, out, err = run(capsys, "compare", str(tmp_path / "r"), "--out", str(tmp_path / "c"))
    assert code == 0, err
    md = (tmp_path / "c.md").read_text()
    assert "| 2/2 (metrics.jsonl: 0 records) |" in md and "| 0/2 |" not in md, md


@pytest.mark.parametrize("out", ["NAME.cmp", "NAME", "sub/NAME.md"])
def test_compare_links_the_figure_it_writes(capsys, tmp_path, searched, out):
    src, _ = searched
    (tmp_path / "sub").mkdir()
    code, _, err = run(capsys, "compare", str(src), "--out", str(tmp_path / out))
    assert code == 0, err
    md = next(tmp_path.rglob("NAME.md"))
    link = md.read_text().split("](")[1].split(")")[0]
    assert (md.parent / link).is_file(), (link, sorted(p.name for p in md.parent.iterdir()))


# ---- image folders with files that are not images ---------------------------------------------
def _png(path, size=8, seed=0):
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _image_folder(root, split=False):
    for part in (("train", "test") if split else ("",)):
        for c in ("cat", "dog"):
            (root / part / c).mkdir(parents=True, exist_ok=True)
            for i in range(4):
                _png(root / part / c / f"{i}.png", seed=i + 7 * (c == "dog"))
    return root


BAD_IMAGES = {
    "empty png": (lambda f: f.write_bytes(b""), "cat/0.png"),
    "text named jpg": (lambda f: f.with_suffix(".jpg").write_text("not a picture"), "cat/0.jpg"),
    "truncated png": (lambda f: f.write_bytes(f.read_bytes()[:60]), "cat/0.png"),
    "png header then garbage": (lambda f: f.write_bytes(f.read_bytes()[:16] + b"\x00" * 200),
                                "cat/0.png"),
}


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("case", list(BAD_IMAGES))
@pytest.mark.parametrize("command", ["search", "train"])
def test_an_unreadable_image_is_named_before_a_run_directory_exists(capsys, tmp_path, case,
                                                                    split, command):
    data = _image_folder(tmp_path / "imgs", split=split)
    damage, rel = BAD_IMAGES[case]
    where = data / ("test" if split else "") / "cat"
    damage(where / "0.png")
    bad = where / rel.split("/")[1]
    argv = ["--dataset", "imagefolder", "--data-dir", str(data),
            "--channels", "4", "--cells", "1", "--epochs", "1", "--quiet", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    if command == "train":
        argv = ["--genotype", BEST] + argv
    code, _, err = run(capsys, command, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{bad} is not a readable image" in err, err
    assert not (tmp_path / "run").exists()
