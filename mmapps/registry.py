"""One small generic registry; one instance per kind of part (encoders, fusions, heads, metrics)."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from mmapps.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> constructor. ``register`` refuses duplicates; ``get`` suggests close matches.

    Example::

        ENCODERS = Registry("encoder")

        @ENCODERS.register("tabular_mlp")
        class TabularEncoder(nn.Module): ...

        ENCODERS.get("tabular_mlp")(dim=64, in_features=12)
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[name]!r})")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} Registered: {', '.join(sorted(self._entries)) or 'none'}")
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(name for name in self._entries if fnmatch.fnmatch(name, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)


ENCODERS: Registry = Registry("encoder")
FUSIONS: Registry = Registry("fusion")
HEADS: Registry = Registry("head")
METRICS: Registry = Registry("metric")
