"""The package's layers: the modules that moved into core/, engine/, runs/ and experiments/
still import by their old names as the same module objects, and the package root holds only
the layers and what every layer shares."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import archgrad

ROOT = Path(archgrad.__file__).parent


@pytest.mark.parametrize("short,real", sorted(archgrad.MOVED.items()))
def test_an_old_module_name_is_the_moved_module(short, real):
    assert importlib.import_module(f"archgrad.{short}") is importlib.import_module(real)
    assert importlib.import_module(real).__spec__.name == real


def test_the_public_functions_keep_their_names():
    import archgrad.train  # noqa: F401 (the module by its old name)
    assert callable(archgrad.train) and callable(archgrad.search)
    from archgrad.train import load_model
    assert archgrad.load_model is load_model


def test_old_names_import_in_a_fresh_process():
    code = ("from archgrad.rundir import RunLock; from archgrad.strategy import StepContext; "
            "import archgrad.plot, archgrad.report; import archgrad; "
            "assert archgrad.plot.__name__ == 'archgrad.experiments.plot'; print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_the_root_holds_the_layers_and_what_they_share():
    modules = sorted(p.stem for p in ROOT.glob("*.py"))
    assert modules == ["__init__", "__main__", "errors", "plugins", "registry"], modules
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    assert {"core", "engine", "runs", "experiments", "search", "cli", "spaces",
            "methods"} <= set(packages)
