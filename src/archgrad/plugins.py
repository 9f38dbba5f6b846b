"""Strategies and spaces from outside the package, for the command line and sweep workers.

A strategy or space registered in your own module (``@archgrad.methods.register``,
``archgrad.spaces.SPACES.register``) is there for the Python API as soon as the module is
imported. The command line, ``torchrun`` and a sweep's worker processes import

* the modules named in ``$ARCHGRAD_PLUGINS`` (comma-separated, importable from the current
  directory or ``sys.path``), and
* the entry points of the ``archgrad.plugins`` group of installed packages
  (``[project.entry-points."archgrad.plugins"] mine = "my_package.nas"`` in its pyproject).

A sweep started from Python passes the modules of the strategies and spaces it uses on to its
workers itself; one defined in ``__main__`` cannot be imported by them, and is refused in one
line.
"""
from __future__ import annotations

import importlib
import os
import sys

from .errors import ArchgradError

ENV = "ARCHGRAD_PLUGINS"
GROUP = "archgrad.plugins"
_done: set[str] = set()


def _modules(value: str | None) -> list[str]:
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def load() -> None:
    """Import the plugin modules of ``$ARCHGRAD_PLUGINS`` and of installed entry points (once
    per process); a module that fails to import is one line naming it."""
    names = _modules(os.environ.get(ENV))
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m archgrad` has it; the console script not
    for name in names:
        if name in _done:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # its own error, whatever it is, in one line
            raise ArchgradError(f"cannot import plugin module {name!r} (from ${ENV}): "
                                f"{type(e).__name__}: {e}") from None
        _done.add(name)
    from importlib.metadata import entry_points
    for ep in entry_points(group=GROUP):
        key = f"{GROUP}:{ep.name}"
        if key in _done:
            continue
        try:
            ep.load()
        except Exception as e:
            raise ArchgradError(f"cannot load the archgrad plugin {ep.name!r} ({ep.value}): "
                                f"{type(e).__name__}: {e}") from None
        _done.add(key)


def module_of(kind: str, name: str) -> str | None:
    """The module that registered strategy or space ``name``, where it is not archgrad's."""
    if kind == "strategy":
        from .methods import STRATEGIES
        obj = STRATEGIES.get(name).factory
    else:
        from .spaces import SPACES
        obj = SPACES.get(name)
    mod = getattr(obj, "__module__", "") or ""
    return None if mod == "archgrad" or mod.startswith("archgrad.") else mod


def env_for(strategies, spaces) -> str | None:
    """``$ARCHGRAD_PLUGINS`` for worker processes that run these strategies and spaces: the
    current value and the modules that registered them."""
    mods = _modules(os.environ.get(ENV))
    for kind, names in (("strategy", strategies), ("space", spaces)):
        for n in names:
            m = module_of(kind, n)
            if m == "__main__":
                raise ArchgradError(
                    f"{kind} '{n}' is defined in the script being run (__main__), which a "
                    f"sweep's worker processes cannot import; move it into a module and import "
                    f"that (or name it in ${ENV})")
            if m and m not in mods:
                mods.append(m)
    return ",".join(mods) or None


__all__ = ["load", "module_of", "env_for", "ENV", "GROUP"]
