"""One registry type for everything chosen by name: datasets, corruption kinds, architectures,
unlearning methods and detection signals.

Each kind of thing keeps one `Registry`, filled by a decorator where the thing is defined, so a
new entry is one registration and every list of names (CLI choices, help, `remcli methods`)
is read from the registry instead of being written out again. A name registered twice is a
programming error and fails at import; an unknown name is the user's error and fails as one
line listing the valid names (exit code 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from remcli.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the thing itself and what the registering code said about it."""

    name: str
    value: T
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Names -> things, in registration order.

    `what` names the kind of thing in messages ("unknown corruption kind 'x'; choose from ...");
    `hint` is appended to that message (e.g. "see `remcli methods`").
    """

    def __init__(self, what: str, hint: str = ""):
        self.what = what
        self.hint = hint
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, **meta: Any) -> T:
        """Register `value` as `name` with its metadata; a second registration of a name raises."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = Entry(name, value, MappingProxyType(dict(meta)))
        return value

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator form of `add`: `@REGISTRY.register("name", key=value)` returns the thing unchanged."""

        def wrap(value: T) -> T:
            return self.add(name, value, **meta)

        return wrap

    def entry(self, name: str) -> Entry[T]:
        """The entry for `name`; an unknown name is an `InputError` listing the registered ones."""
        try:
            return self._entries[name]
        except KeyError:
            hint = f" ({self.hint})" if self.hint else ""
            raise InputError(f"unknown {self.what} {name!r}; choose from {', '.join(self._entries)}{hint}") from None

    def get(self, name: str) -> T:
        return self.entry(name).value

    def meta(self, name: str) -> Mapping[str, Any]:
        return self.entry(name).meta

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry[T], ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries
