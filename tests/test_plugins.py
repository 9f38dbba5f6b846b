"""Strategies of one's own: registered in a module named by $ARCHGRAD_PLUGINS, they run from the
command line and in a sweep's worker processes."""
from __future__ import annotations

import sys
import types

import pytest
from conftest import run_cli as run

from archgrad import plugins
from archgrad.errors import ArchgradError
from archgrad.methods import STRATEGIES

PLUGIN = '''
import torch
from archgrad.arch import Mix
from archgrad.methods import adam_update, common, register
from archgrad.strategy import Estimator, Strategy


class Tempered(Estimator):
    def __init__(self, temperature):
        super().__init__()
        self.t = temperature

    def weight_mix(self, ctx):
        return Mix({k: torch.softmax(v.detach() / self.t, -1) for k, v in ctx.arch.theta.items()})

    def arch_mix(self, ctx):
        return Mix({k: torch.softmax(v / self.t, -1) for k, v in ctx.arch.theta.items()}), None


@register("tempered-test", family="darts", adam=True)
def tempered(temperature: float = 2.0, **options):
    """DARTS with a softmax temperature (a plugin of the tests)."""
    return Strategy("tempered-test", Tempered(temperature), adam_update(options), bilevel=True,
                    **common(options))
'''

TINY = ["--dataset", "synthetic", "--channels", "4", "--cells", "1", "--epochs", "1",
        "--quiet"]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "my_nas_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(plugins.ENV, "my_nas_plugin")
    entries, helps = dict(STRATEGIES._entries), dict(STRATEGIES._help)
    yield tmp_path
    STRATEGIES._entries.clear()
    STRATEGIES._entries.update(entries)
    STRATEGIES._help.clear()
    STRATEGIES._help.update(helps)
    sys.modules.pop("my_nas_plugin", None)
    plugins._done.discard("my_nas_plugin")
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


@pytest.mark.slow
def test_a_plugin_strategy_runs_from_the_command_line_and_in_sweep_workers(capsys, plugin_dir):
    code, out, err = run(capsys, "search", "--strategy", "tempered-test", "--set",
                         "temperature=3", *TINY, "--out", "r")
    assert code == 0, err
    assert (plugin_dir / "r" / "result.json").is_file()
    code, out, err = run(capsys, "list", "strategies")
    assert "tempered-test" in out and "temperature = 2.0" in out
    # a sweep's workers are other processes: they import the plugin too
    code, out, err = run(capsys, "sweep", "--strategies", "tempered-test", "darts", *TINY,
                         "--out", "sw")
    assert code == 0, err
    assert "2/2 runs done" in out
    assert not list((plugin_dir / "sw" / "runs").glob("*.failed.txt"))


def test_a_plugin_that_does_not_import_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(plugins.ENV, "no_such_plugin_module")
    code, out, err = run(capsys, "list", "spaces")
    assert code == 2 and err.strip() == (
        "archgrad: error: cannot import plugin module 'no_such_plugin_module' (from "
        "$ARCHGRAD_PLUGINS): ModuleNotFoundError: No module named 'no_such_plugin_module'")
    monkeypatch.delenv(plugins.ENV)
    code, out, err = run(capsys, "search", "--strategy", "tempered-nope")
    assert code == 2 and "your own: name its module in $ARCHGRAD_PLUGINS" in err


def test_sweep_workers_get_the_modules_of_the_strategies_they_run(monkeypatch):
    monkeypatch.delenv(plugins.ENV, raising=False)
    assert plugins.env_for(["darts", "gdas"], ["nb201"]) is None
    entries = dict(STRATEGIES._entries)
    try:
        for module in ("my_pkg.nas", "__main__"):
            factory = types.FunctionType((lambda **o: None).__code__, {}, "f")
            factory.__module__ = module
            STRATEGIES._entries["mine"] = types.SimpleNamespace(factory=factory)
            if module == "__main__":
                with pytest.raises(ArchgradError, match="defined in the script being run"):
                    plugins.env_for(["mine"], ["nb201"])
            else:
                monkeypatch.setenv(plugins.ENV, "other")
                assert plugins.env_for(["darts", "mine"], ["nb201"]) == "other,my_pkg.nas"
    finally:
        STRATEGIES._entries.clear()
        STRATEGIES._entries.update(entries)


def test_an_installed_packages_entry_point_is_loaded(capsys, plugin_dir, monkeypatch):
    monkeypatch.delenv(plugins.ENV)
    dist = plugin_dir / "my_nas_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-nas-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[archgrad.plugins]\nmine = my_nas_plugin\n")
    monkeypatch.syspath_prepend(str(plugin_dir))
    code, out, err = run(capsys, "search", "--strategy", "tempered-test", *TINY, "--out", "r")
    assert code == 0, err
    plugins._done.discard("archgrad.plugins:mine")
