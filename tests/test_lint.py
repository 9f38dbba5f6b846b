"""The code passes the project's lint configuration (pyproject.toml [tool.ruff])."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    p = subprocess.run([ruff, "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout[-3000:]
