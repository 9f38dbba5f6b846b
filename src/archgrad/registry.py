"""Name -> factory registries for spaces, strategies and datasets (timm's ``create_model`` idea)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def first_paragraph(doc: str | None) -> str:
    """A docstring's first paragraph on one line."""
    para = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


class Registry(Generic[T]):
    """A registry of named entries. ``register`` works as a decorator or a plain call."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, help: str = "", replace: bool = False):
        def add(o: T) -> T:
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = o
            doc = help or first_paragraph(getattr(o, "__doc__", None))
            self._help[name] = doc
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def help(self, name: str) -> str:
        self.get(name)
        return self._help[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


Factory = Callable[..., T]
