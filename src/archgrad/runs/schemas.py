"""The shape of every JSON file of a run directory, in one place, checked wherever one is read.

A file that parses but is not what archgrad wrote (a list where an object belongs, a string
where a number belongs) is refused as damaged in one line naming the file and what was
expected, like one that does not parse. Keys a schema does not name pass unchecked (newer
versions may add them); the ones readers compute with are typed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ArchgradError

NUMBER = "number"  # int or float, not bool
OPT_NUMBER = "number or null"
TEXT = "string"
OPT_TEXT = "string or null"
OBJECT = "object"
OPT_OBJECT = "object or null"
LIST = "list"
INTEGER = "integer"
OPT_BOOLEAN = "boolean or null"


def _is(kind: str, v: Any) -> bool:
    if v is None and kind.endswith("or null"):
        return True
    base = kind.removesuffix(" or null")
    if base == NUMBER:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if base == INTEGER:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, {TEXT: str, OBJECT: dict, LIST: list, "boolean": bool}[base])


# (key -> kind), and which keys must be present
_RESULT_NUMBERS = ("entropy", "max_prob", "supernet_valid_acc", "supernet_valid_loss",
                   "supernet_valid_ppl", "derived_valid_acc", "derived_valid_loss",
                   "derived_valid_acc_bn", "derived_valid_loss_bn", "discretization_gap",
                   "discretization_gap_bn", "search_time_s", "peak_rss_mb", "skip_connects",
                   "derived_loss", "final_test_loss")
SCHEMAS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "config.json": ({"search": OBJECT}, ("search",)),
    "train_config.json": ({"train": OBJECT}, ("train",)),
    "result.json": ({"genotype": TEXT, "epochs": INTEGER, "derive": OPT_TEXT,
                     "argmax_genotype": OPT_TEXT, "process_best_genotype": OPT_TEXT,
                     "benchmark": OPT_OBJECT, "found_teacher": OPT_BOOLEAN,
                     **{k: OPT_NUMBER for k in _RESULT_NUMBERS}}, ("genotype",)),
    "metrics.jsonl": ({"epoch": INTEGER, "steps": INTEGER, "genotype": OPT_TEXT,
                       "probs": OPT_OBJECT, "benchmark": OPT_OBJECT,
                       **{k: OPT_NUMBER for k in ("train_loss", "train_acc", "arch_loss",
                                                  "arch_acc", "lr", "entropy", "max_prob",
                                                  "skip_connects", "time_s", "hessian_eig",
                                                  "derived_loss")}}, ("epoch",)),
    "train_result.json": ({"test_acc": OPT_NUMBER, "test_ppl": OPT_NUMBER,
                           "valid_ppl": OPT_NUMBER, "params": OPT_NUMBER,
                           "history": LIST}, ()),
    "train_metrics.jsonl": ({"epoch": INTEGER}, ("epoch",)),
    "sweep.json": ({"runs": LIST, "meta": OBJECT}, ("runs",)),
}
SCHEMAS["retrain.json"] = SCHEMAS["train_result.json"]


def check(obj: Any, name: str, path: str | Path, line: int | None = None) -> dict:
    """``obj`` if it has the shape of the file ``name`` (a key of SCHEMAS), else ArchgradError
    naming ``path`` (and the line of a .jsonl file)."""
    fields, required = SCHEMAS[name]

    def damaged(detail: str) -> ArchgradError:
        return ArchgradError(f"{path} is damaged ("
                             + (f"line {line}: " if line is not None else "") + detail + ")")

    if not isinstance(obj, dict):
        raise damaged(f"a JSON {_kind(obj)} where an object belongs")
    for k in required:
        if k not in obj:
            raise damaged(f"no '{k}'")
    for k, kind in fields.items():
        if k in obj and not _is(kind, obj[k]):
            raise damaged(f"'{k}' should be a {kind}, got a {_kind(obj[k])}")
    return obj


def _kind(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def read(path: str | Path, name: str | None = None) -> dict:
    """A run-directory JSON file, parsed and checked (``name``: its schema, by default the
    file's own name)."""
    path = Path(path)
    name = name or path.name
    try:
        obj = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ArchgradError(f"{path} is damaged (not text)") from None
    except json.JSONDecodeError as e:
        raise ArchgradError(f"{path} is damaged (not valid JSON: {e})") from None
    except OSError as e:
        raise ArchgradError(f"cannot read {path} ({e.strerror or e})") from None
    return check(obj, name, path)


def read_lines(path: str | Path, name: str | None = None) -> list[dict]:
    """A run-directory JSON-lines file, every record parsed and checked."""
    path = Path(path)
    name = name or path.name
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ArchgradError(f"{path} is damaged (not text)") from None
    except OSError as e:
        raise ArchgradError(f"cannot read {path} ({e.strerror or e})") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArchgradError(f"{path} is damaged (line {i}: not valid JSON: {e})") from None
        rows.append(check(obj, name, path, i))
    return rows
