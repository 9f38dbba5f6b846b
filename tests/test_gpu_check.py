"""bench/gpu_check.py, the script a first GPU runs at once, checked on the CPU in its dry mode."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes and whole runs: the second pytest call


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path):
    """bench/gpu_check.py --dry-run: every phase at its smallest on the CPU, its JSON written,
    no phase failing (the script a first GPU runs at once is known to run)."""
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "g.json"
    p = subprocess.run([sys.executable, str(root / "bench" / "gpu_check.py"), "--dry-run",
                        "--json", str(out)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    r = json.loads(out.read_text())
    assert r["dry_run"] and set(r["phases"]) == {"cuda tests", "step time", "full-scale epoch",
                                                 "sharing"}
    assert not [n for n, ph in r["phases"].items() if "error" in ph or "skipped" in ph]
    assert "collected" in r["phases"]["cuda tests"]["summary"]
    assert r["phases"]["step time"]["rows"] and r["phases"]["sharing"]["rows"]
    assert "| searches at once |" in p.stdout
