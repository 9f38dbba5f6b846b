"""Run directories: atomic writes, checkpoints, and RNG state capture.

Every file is written to a temporary sibling, flushed, fsynced and renamed over its target, so an
interruption leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ArchgradError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it); a place that
    cannot be written (a full disk, a file or directory in the way) is one line
    (ArchgradError), not a traceback."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ArchgradError(f"cannot write {path} ({e.strerror or e})") from None
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist()) if obj.dim() else float(obj)
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN -> null keeps the JSON standard
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def write_jsonl(path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(to_jsonable(r)) + "\n" for r in rows))


def read_json(path) -> Any:
    with open(path) as f:
        return json.load(f)


def content_digest(obj: Any) -> str:
    """A digest of a checkpoint's contents (every tensor's dtype, shape and bytes, every other
    value's repr, keys in sorted order): damage inside a tensor's bytes, which leaves the file
    loadable, changes it."""
    h = hashlib.blake2b(digest_size=16)

    def walk(o):
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(o.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(f"D{len(o)}".encode())
            for k, v in sorted(o.items(), key=lambda kv: repr(kv[0])):
                h.update(repr(k).encode())
                walk(v)
        elif isinstance(o, (list, tuple)):
            h.update(f"{'L' if isinstance(o, list) else 'U'}{len(o)}".encode())
            for v in o:
                walk(v)
        else:
            h.update(f"V{type(o).__name__}:{o!r};".encode())

    walk(obj)
    return h.hexdigest()


def previous_path(path: str | Path) -> Path:
    """Where ``save_checkpoint(..., keep_previous=True)`` keeps the file it replaces."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path, state: dict, keep_previous: bool = False) -> None:
    """``state`` with a digest of its contents (checked by ``load_checkpoint``), written
    atomically. ``keep_previous``: the file it replaces stays as ``NAME.prev.pt`` (a hard link
    made before the new file is renamed in, so one of them is whole at every moment)."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({**state, "digest": content_digest(state)}, buf)
    if keep_previous and path.is_file():
        prev = previous_path(path)
        tmp = path.with_name(f".{prev.name}.link.tmp")
        try:
            tmp.unlink(missing_ok=True)
            os.link(path, tmp)
            os.replace(tmp, prev)
        except OSError:  # no hard links here: a copy
            tmp.unlink(missing_ok=True)
            atomic_write_bytes(prev, path.read_bytes())
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, required: tuple[str, ...] = ()) -> dict:
    """A checkpoint written by archgrad, loaded as data only (``weights_only=True``: tensors
    and plain containers; no code runs), its contents checked against the digest it was written
    with. Any damage gives a one-line error naming the file (and the kept previous checkpoint
    to fall back to, where there is one)."""
    path = Path(path)
    if not path.is_file():
        raise ArchgradError(f"no checkpoint at {path}")
    prev = previous_path(path)
    fallback = (f"; the previous epoch's checkpoint is kept: `mv {prev} {path}` and resume "
                f"again to repeat the last epoch") if prev.is_file() else ""
    if path.stat().st_size == 0:
        raise ArchgradError(f"{path} is empty (an interrupted write?)" + (
            fallback or "; remove it to restart the run from its config.json"))
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, garbled, or holding objects that are not data
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ArchgradError(f"{path} is not a readable archgrad checkpoint ({reason})"
                            f"{fallback}") from None
    if not isinstance(ck, dict) or any(k not in ck for k in required):
        missing = [k for k in required if not isinstance(ck, dict) or k not in ck]
        raise ArchgradError(f"{path} is not an archgrad checkpoint of this kind (missing "
                            f"{', '.join(missing) or 'its contents'}){fallback}")
    if "digest" in ck:  # files of archgrad 0.1 before digests load unchecked
        saved = ck.pop("digest")
        if saved != content_digest(ck):
            raise ArchgradError(f"{path} is damaged: its contents do not match the digest it "
                                f"was written with{fallback}")
    return ck


def config_digest(config: dict) -> str:
    """A digest of a run's configuration, kept in its checkpoint so that an edited config.json
    or another run's checkpoint is caught on resume."""
    text = json.dumps(to_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rng_state() -> dict:
    """Every global random state, as tensors and plain containers (loadable without pickle)."""
    np_state = np.random.get_state()
    py = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(
                 np.asarray(np_state[1], dtype=np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
             "python": [int(py[0]), list(py[1]), py[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


MAX_SEED = 2 ** 32 - 1


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ArchgradError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


#: the names new_run_dir chose in this process -> the directory claim_dir made for each
_AUTO: dict[str, Path] = {}


def new_run_dir(root: str | Path, *parts: str) -> Path:
    """A fresh path ``root/<date-time>-<parts>`` (suffixed if it exists); not created here:
    the run creates it once everything is validated (:func:`claim_dir`)."""
    root = Path(root)
    stem = time.strftime("%Y%m%d-%H%M%S") + "-" + "-".join(p for p in parts if p)
    path, i = root / stem, 1
    while path.exists():
        i += 1
        path = root / f"{stem}-{i}"
    _AUTO[str(path)] = path
    return path


def claim_dir(path: Path) -> tuple[Path, list[Path]]:
    """Create a new run directory; returns it and the directories made (deepest first). A name
    :func:`new_run_dir` chose is claimed atomically: if another process took it meanwhile (two
    searches started in the same second), the next free suffix; a name the user gave is used
    as it is."""
    path = Path(path)
    if str(path) not in _AUTO:
        made = missing_dirs(path)
        make_dir(path)
        return path, made
    make_dir(path.parent)
    cand, i = path, 1
    while True:
        made = missing_dirs(cand)
        try:
            cand.mkdir()  # atomic: exactly one process creates a given name
        except FileExistsError:
            i += 1
            cand = path.parent / f"{path.name}-{i}"
            continue
        except OSError as e:
            raise ArchgradError(f"cannot create the run directory {cand} "
                                f"({e.strerror or e})") from None
        _AUTO[str(path)] = cand
        return cand, made


def claimed(path: str | Path) -> Path:
    """The directory a run named ``path`` by :func:`new_run_dir` ended up in."""
    return _AUTO.get(str(path), Path(path))


#: the longest file name (one path component) and path the file systems here take, in bytes
NAME_MAX, PATH_MAX = 255, 4096


def path_problem(text: str) -> str | None:
    """What makes ``text`` unusable as a path on any file system here (None: nothing)."""
    if "\0" in text:
        return "a path cannot contain a NUL character"
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX:
        return f"the path is {len(raw)} bytes long, more than the {PATH_MAX} a path may have"
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return (f"a name in the path is {len(longest)} bytes long, more than the {NAME_MAX} a "
                f"file name may have ({os.fsdecode(longest[:40])}...)")
    return None


def as_path(value, what: str) -> Path:
    """``value`` as a path, or one line saying what is accepted (the Python API's out=, ...)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ArchgradError(f"{what} must be a path (a str or a pathlib.Path), got {value!r}")
    problem = path_problem(str(value))
    if problem:
        raise ArchgradError(f"{what}: {problem}")
    return Path(value).expanduser()  # "~/runs/x" from Python as from a shell


def existing_dir(value) -> Path | None:
    """``value`` as a directory that exists, else None: a genotype string is not a path, and a
    name too long for the file system (a DARTS genotype) or one no file system takes is not an
    error here."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return None
    try:
        p = Path(value).expanduser()
        return p if p.is_dir() else None
    except (OSError, ValueError):
        return None


def resumed_config(cfg, config_path: Path, check, device: str = "auto", data_dir=None):
    """A saved run configuration as it resumes: on ``device`` and ``data_dir`` where given (the
    machine's settings, not the run's), checked by ``check`` again, an error naming the file."""
    if device != "auto":
        cfg.device = device
    if data_dir is not None:
        cfg.data_dir = str(data_dir)
    try:
        check(cfg)
    except ArchgradError as e:
        raise ArchgradError(f"{config_path}: {e}") from None
    return cfg


def check_out_dir(path: Path, what: str = "--out") -> None:
    """Refuse a run directory that cannot be one, before anything is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArchgradError(f"{what} {path} is a file, not a directory")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ArchgradError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArchgradError(f"{what} {path}: cannot write in {parent}")


def make_dir(path: Path) -> None:
    """Create a run directory (and its parents), or say in one line why it cannot be."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArchgradError(f"cannot create the run directory {path} ({e.strerror or e})") \
            from None


def missing_dirs(path: Path) -> list[Path]:
    """The directories creating ``path`` would make, deepest first."""
    path = Path(path).absolute()
    return [p for p in (path, *path.parents) if not p.exists()]


def undo_set_up(run_dir: Path, made: list[Path], lock: "RunLock") -> None:
    """What a run refused during its set-up made, removed while it still holds ``lock``: the
    lock file and, where empty, the directories it created (``made``, from
    :func:`missing_dirs`); a refused run leaves nothing behind."""
    try:
        lock.path.unlink(missing_ok=True)
    except OSError:
        return
    for d in made:
        try:
            d.rmdir()
        except OSError:  # not empty, or not ours to remove
            return


def clean_temporaries(run_dir: Path) -> list[str]:
    """Remove the temporary files interrupted atomic writes left (``.NAME.*.tmp``)."""
    removed = []
    for f in Path(run_dir).glob(".*.tmp"):
        try:
            f.unlink()
            removed.append(f.name)
        except OSError:
            pass
    return removed


class RunLock:
    """An exclusive lock on a run directory for as long as a process runs in it (``flock`` on
    ``RUN/.lock``): a second process is refused, and a killed one leaves no stale lock (the
    kernel releases it with the process)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ArchgradError(f"cannot write in the run directory {self.path.parent} "
                                f"({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise ArchgradError(f"{self.path.parent} is in use by another archgrad process "
                                f"(pid {holder}); wait for it to end or choose another "
                                f"directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
