"""User-facing errors.

Every mistake a user can make (an unknown name, a malformed genotype, a missing dataset, options
that clash) raises an :class:`ArchgradError` whose message is one line saying what is wrong and
what is accepted. The command line prints it and exits with status 2, without a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class ArchgradError(ValueError):
    """A user error; its message is a single line meant to be shown as is."""

    #: the command line's exit status for it
    exit_code = 2


class DivergenceError(ArchgradError):
    """A run whose loss or gradients stopped being finite: stopped, last good checkpoint kept."""

    exit_code = 3


class UnknownNameError(ArchgradError, KeyError):
    def __init__(self, kind: str, name: object, accepted: Iterable[str]):
        accepted = sorted(accepted)
        close = difflib.get_close_matches(str(name), accepted, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        own = " (your own: name its module in $ARCHGRAD_PLUGINS)" if kind in ("strategy", "space") \
            else ""
        super().__init__(f"unknown {kind} '{name}'{hint}; choose one of: {', '.join(accepted)}"
                         f"{own}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class GenotypeError(ArchgradError):
    """A genotype string or value that does not describe an architecture of the space."""


class DatasetNotFoundError(ArchgradError, FileNotFoundError):
    def __str__(self) -> str:
        return self.args[0]
