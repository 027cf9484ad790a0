"""A name table for constructors (models, criteria, ...), with errors that suggest close names."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


def close_names(name: str, choices: list[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``choices`` that look like ``name`` (for 'did you mean')."""
    return difflib.get_close_matches(name, choices, n=n, cutoff=0.5)


def did_you_mean(name: str, choices: list[str], *, n: int = 3, prefix: str = "", quote: bool = True) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the entries of ``choices`` close to ``name``, or ``""`` if none is."""
    close = close_names(name, choices, n=n)
    shown = [repr(prefix + c) if quote else prefix + c for c in close]
    return f"; did you mean {' or '.join(shown)}?" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """Format the error for an unknown ``name`` of ``kind``, naming close matches and all choices."""
    return f"unknown {kind} {name!r}{did_you_mean(name, choices)} (valid: {', '.join(sorted(choices))})"


class Registry(Generic[T]):
    """Map names to constructors; ``register`` is a decorator, ``get`` raises on unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the object under ``name`` (default: its ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._table:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._table[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; raise KeyError naming close matches."""
        try:
            return self._table[name]
        except KeyError:
            raise KeyError(unknown_name_message(self.kind, name, list(self._table))) from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` (PEP 562) that imports ``table[name]`` on first use of ``name`` and caches it.

    Packages whose submodules need torch export their names this way, so that their plain-data
    submodules (name tables, presets, grids) import without torch.
    """
    import importlib
    import sys

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
