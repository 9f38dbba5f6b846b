import subprocess
import sys

import pytest

CODE = "from archgrad.runtime import keep_freed_memory as k; print(k(), k())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc setting")
@pytest.mark.parametrize("env, expected", [({}, "True True"),
                                           ({"ARCHGRAD_MALLOC": "default"}, "False False")])
def test_keep_freed_memory_is_applied_once_and_can_be_refused(env, expected, monkeypatch):
    monkeypatch.delenv("ARCHGRAD_MALLOC", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
