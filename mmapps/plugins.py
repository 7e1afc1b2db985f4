"""Discover domains registered under the ``mmapps.domains`` entry-point group, lazily and safely.

Importing this module imports no torch: a domain's ``__init__`` holds only its declarative
`Domain` object. A plugin that fails to import is listed with its error and an install hint,
and never breaks the other domains.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import entry_points

from mmapps.domain import Domain
from mmapps.errors import ConfigError, DomainLoadError

GROUP = "mmapps.domains"


@dataclass(frozen=True)
class DomainEntry:
    """One entry point: its name, target, distribution, and the loaded domain or the error."""

    name: str
    target: str
    distribution: str
    domain: Domain | None
    error: str | None

    @property
    def install_hint(self) -> str:
        if self.domain is not None:
            return self.domain.install_hint
        missing = self.error.split("'")[1] if self.error and "No module named" in self.error else None
        if missing:
            return f"pip install {missing.split('.')[0]}  (needed by {self.distribution})"
        return f"pip install --force-reinstall {self.distribution}"


@functools.lru_cache(maxsize=1)
def discover_domains() -> tuple[DomainEntry, ...]:
    """All installed domains, sorted by name; import failures are captured, not raised."""
    found = []
    for ep in entry_points(group=GROUP):
        distribution = ep.dist.name if ep.dist is not None else "?"
        try:
            domain = ep.load()
            if not isinstance(domain, Domain):
                raise TypeError(f"{ep.value} is a {type(domain).__name__}, not an mmapps.domain.Domain")
            if domain.name != ep.name:
                raise ValueError(f"entry point {ep.name!r} loads a domain named {domain.name!r}; the two names must agree")
            found.append(DomainEntry(ep.name, ep.value, distribution, domain, None))
        except Exception as err:  # a broken plugin must not break the others
            found.append(DomainEntry(ep.name, ep.value, distribution, None, f"{type(err).__name__}: {err}"))
    unique = {entry.name: entry for entry in found}
    return tuple(unique[name] for name in sorted(unique))


def get_domain(name: str) -> Domain:
    """The installed domain called `name`, or a clear error."""
    entries = {entry.name: entry for entry in discover_domains()}
    if name not in entries:
        raise ConfigError(f"unknown domain {name!r}; installed domains: {', '.join(entries) or 'none'} (see `mmapps domains`)")
    entry = entries[name]
    if entry.domain is None:
        raise DomainLoadError(f"domain {name!r} ({entry.target}) failed to import: {entry.error}. Install hint: {entry.install_hint}")
    return entry.domain
