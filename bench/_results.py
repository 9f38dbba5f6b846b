"""Shared helper: replace a marked block of bench/RESULTS.md (append it under a heading)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_block(name: str, heading: str, body: str) -> Path:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    path.write_text(text)
    print(f"wrote {path}")
    return path


def emit(write: bool, name: str, heading: str, body: str) -> None:
    """Write the block into RESULTS.md (``--write``) or print it."""
    if write:
        write_block(name, heading, body)
    else:
        print(body)
