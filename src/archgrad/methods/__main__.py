"""``python -m archgrad.methods [PATH]``: write the table of every strategy's defaults and their
sources (default: docs/defaults.md of the source tree)."""
import sys
from pathlib import Path

from . import defaults_table

out = Path(sys.argv[1]) if len(sys.argv) > 1 else \
    Path(__file__).resolve().parents[3] / "docs" / "defaults.md"
out.write_text(defaults_table() + "\n")
print(f"wrote {out}")
