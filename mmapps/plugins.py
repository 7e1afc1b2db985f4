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


@dataclass(frozen=True)
class PartsListing:
    """Every encoder, fusion and head mmapps can build, and the plugins whose parts failed to load."""

    parts: tuple  # tuple[mmapps.registry.PartInfo, ...]
    broken: tuple[str, ...]


def list_parts(pattern: str = "*", kinds: tuple[str, ...] = ("encoder", "fusion", "head")) -> PartsListing:
    """Core parts, parts of every installed domain (its ``setup`` / ``register_parts`` hook is called)
    and entry-point parts (``mmapps.encoders``, ``mmapps.fusions``, ``mmapps.heads``), imported to check them.

    A domain or entry point that fails to import is reported in ``broken``, never raised.
    """
    from mmapps.domain import resolve
    from mmapps.models.build import register_core_parts
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    broken = []
    for entry in discover_domains():
        if entry.domain is None:
            broken.append(f"domain {entry.name}: {entry.error}")
            continue
        if entry.domain.setup is not None:
            try:
                resolve(entry.domain.setup)()
            except Exception as err:  # one broken plugin must not hide the others' parts
                broken.append(f"domain {entry.name} setup {entry.domain.setup}: {type(err).__name__}: {err}")
    registries = {"encoder": ENCODERS, "fusion": FUSIONS, "head": HEADS}
    parts = tuple(info for kind in kinds for info in registries[kind].info(pattern))
    broken += [f"{p.kind} {p.name} ({p.target} of {p.source}): {p.error}" for p in parts if p.error]
    return PartsListing(parts, tuple(broken))
