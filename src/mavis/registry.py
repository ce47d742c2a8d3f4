"""A small name -> implementation registry with decorator registration and lazy loading.

Modelled on lm-evaluation-harness: each entry is registered with a decorator in the module
that defines it, or lazily as a "module:object" string so that heavy imports happen only when
the entry is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from mavis.errors import MavisError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._entries[name] = obj
            self._descriptions[name] = description or (getattr(obj, "__doc__", "") or "").strip()
            return obj

        return decorator

    def register_lazy(self, name: str, target: str, description: str) -> None:
        """Register `target` ("package.module:object") without importing it yet."""
        self._entries[name] = target
        self._descriptions[name] = description

    def get(self, name: str) -> T:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise MavisError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The names in the order they were registered."""
        return list(self._entries)

    def describe(self, name: str) -> str:
        return self._descriptions.get(name, "").splitlines()[0] if name in self else ""

    def __contains__(self, name: object) -> bool:
        return name in self._entries
