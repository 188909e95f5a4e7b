"""The one registry vocabulary of the project: `register`, `get`, `available`.

Datasets, backbones and classifiers each keep one `Registry` of named entries. An unknown name
is refused with the list of valid names, the closest match, and a hint on what to run.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


def did_you_mean(name, options: Iterable, n: int = 1) -> str:
    """' Did you mean 'x'?' for the closest option(s) to `name`, or '' when none is close."""
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=n)
    if not match:
        return ""
    return " Did you mean " + " or ".join(f"{m!r}" for m in match) + "?"


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    kind: what an entry is, in words ("dataset", "backbone", "classifier"); error: the exception
    an unknown name raises (a ValueError subclass); hint: a sentence appended to that error (what
    to run or set instead)."""

    def __init__(self, kind: str, error: type[Exception] = ValueError, hint: str = ""):
        self.kind, self.error, self.hint = kind, error, hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """`reg.register(name, entry)`, or as a decorator `@reg.register(name)`. A name is
        registered once: a second registration is a programming error."""
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._entries[name] = obj
            return obj
        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._entries:
            raise self.error(
                f"Unknown {self.kind} {name!r}. Available: {', '.join(self._entries)}."
                f"{did_you_mean(name, self._entries)}{' ' + self.hint if self.hint else ''}")
        return self._entries[name]

    def available(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """Registered names in registration order (`where`: keep entries it accepts)."""
        return [n for n, e in self._entries.items() if where is None or where(e)]

    def __contains__(self, name) -> bool:
        return name in self._entries

    def items(self):
        return self._entries.items()
