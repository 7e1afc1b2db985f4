"""One small generic registry; one instance per kind of part (encoders, fusions, heads, metrics).

Parts come from three places, all listed by ``mmapps parts``:

- the core (``mmapps.models``), registered when `mmapps.models.build.register_core_parts` imports them;
- a package's explicit ``register_parts()`` hook: a function that calls ``ENCODERS.register(name, cls)``
  (a domain names it as ``Domain.setup``; the core calls it once before building a model);
- entry points, for packages that ship parts without a domain::

      [project.entry-points."mmapps.encoders"]
      ecg_resnet = "my_parts.ecg:EcgResNetEncoder"

  listed without importing anything, imported on first use; a part that fails to import names
  its distribution and error instead of breaking the others.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from mmapps.errors import ConfigError, DomainLoadError

T = TypeVar("T")


@dataclass(frozen=True)
class PartInfo:
    """One registered (or entry-point declared) part: where it comes from and what it is."""

    kind: str
    name: str
    source: str  # "core", "domain <name>", or the distribution that ships it
    target: str  # "module:attribute"
    loaded: bool
    error: str | None = None
    options: str | None = None  # config options with defaults (None: not imported)


class Registry(Generic[T]):
    """Name -> constructor. ``register`` refuses duplicates; ``get`` suggests close matches.

    Example::

        ENCODERS = Registry("encoder", group="mmapps.encoders")

        @ENCODERS.register("tabular_mlp")
        class TabularEncoder(nn.Module): ...

        ENCODERS.register("ecg_resnet", EcgResNetEncoder)   # the same, as a plain call
        ENCODERS.get("tabular_mlp")(dim=64, in_features=12)

    Args:
        kind: what the parts are, for messages (``encoder``).
        group: entry-point group whose entries are registered lazily (None: none).
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, T] = {}
        self._declared: dict[str, tuple[str, str]] = {}  # entry points not imported yet: name -> (target, distribution)
        self._errors: dict[str, str] = {}
        self._scanned = group is None

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register `obj` under `name` (``register(name, obj)``), or decorate (``@register(name)``)."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[name]!r})")
            self._entries[name] = obj
            return obj

        return add(obj) if obj is not None else add

    def get(self, name: str) -> T:
        self._scan()
        if name not in self._entries and name in self._declared:
            self._load(name)
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._names(), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint} Registered: {', '.join(self._names()) or 'none'}")
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        self._scan()
        return [name for name in self._names() if fnmatch.fnmatch(name, pattern)]

    def info(self, pattern: str = "*", load: bool = True) -> list[PartInfo]:
        """Every part matching `pattern` with its source; `load` imports entry-point parts (errors are captured)."""
        self._scan()
        out = []
        for name in self.list(pattern):
            if load and name in self._declared and name not in self._entries and name not in self._errors:
                try:
                    self._load(name)
                except DomainLoadError:
                    pass
            if name in self._entries:
                obj = self._entries[name]
                target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
                source = self._declared[name][1] if name in self._declared else source_of(obj)
                out.append(PartInfo(self.kind, name, source, target, True, None, part_options(obj)))
            else:
                target, distribution = self._declared[name]
                out.append(PartInfo(self.kind, name, distribution, target, False, self._errors.get(name)))
        return out

    def _names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._declared))

    def _scan(self) -> None:
        """Record this registry's entry points (names and targets only: nothing is imported)."""
        if self._scanned:
            return
        self._scanned = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            distribution = ep.dist.name if ep.dist is not None else "?"
            if ep.name in self._declared and self._declared[ep.name][0] != ep.value:
                self._errors[ep.name] = f"declared twice: by {self._declared[ep.name][1]} ({self._declared[ep.name][0]}) and by {distribution} ({ep.value})"
                continue
            self._declared[ep.name] = (ep.value, distribution)

    def _load(self, name: str) -> None:
        target, distribution = self._declared[name]
        if name in self._errors:
            raise DomainLoadError(f"{self.kind} {name!r} ({self.group} entry point of {distribution}): {self._errors[name]}")
        try:
            from mmapps.domain import resolve

            obj = resolve(target)
            if not callable(obj):
                raise TypeError(f"{target} is a {type(obj).__name__}, not a class or a factory function")
            self.register(name, obj)
        except Exception as err:  # a broken part must not break the others
            self._errors[name] = f"{type(err).__name__}: {err}"
            raise DomainLoadError(f"{self.kind} {name!r} ({self.group} entry point {target} of {distribution}) failed to import: {self._errors[name]}. Install hint: pip install --force-reinstall {distribution}") from None

    def __contains__(self, name: object) -> bool:
        self._scan()
        return name in self._entries or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())


def source_of(obj: Any) -> str:
    """Who provides a part: ``core``, ``domain <name>`` (built-in domains), or the distribution of its module."""
    module = getattr(obj, "__module__", "") or ""
    if module == "mmapps" or module.startswith("mmapps."):
        return "core"
    if module.startswith("mmapps_domains."):
        return f"domain {module.split('.')[1]}"
    top = module.split(".")[0]
    return ", ".join(_distributions().get(top, [])) or top or "?"


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def check_options(cls: Callable[..., Any], options: Mapping[str, Any], where: str, supplied: tuple[str, ...] = ()) -> None:
    """Refuse option names a part's constructor does not take, with "did you mean" suggestions.

    Args:
        cls: the part's class (or factory function).
        options: every keyword it is about to receive.
        where: the config field, e.g. ``model.encoders.ecg``.
        supplied: keywords the core fills in (``dim``, ``in_dim``...), never reported as options.

    Raises:
        ConfigError: one paragraph naming the field, the unknown or missing option, close matches
            and the accepted options with their defaults.
    """
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {n: p for n, p in params.items() if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    listing = part_options(cls, supplied)
    name = getattr(cls, "__name__", repr(cls))
    core_missing = [k for k in options if k not in accepted and k in supplied]
    if core_missing:
        raise ConfigError(f"{where}: {name} does not accept {', '.join(repr(k) for k in core_missing)}, which the core always passes (see docs/parts.md, the part contracts)")
    unknown = [k for k in options if k not in accepted]
    if unknown:
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(key, [n for n in accepted if n not in supplied], n=2, cutoff=0.6)
            parts.append(f"{key!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise ConfigError(f"{where}.options: {name} has no option {', '.join(parts)}. Its options: {listing}")
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in options]
    if missing:
        raise ConfigError(f"{where}.options: {name} needs {', '.join(repr(m) for m in missing)}. Its options: {listing}")


CORE_SUPPLIED = ("dim", "modality_to_dim", "in_dim", "num_labels", "per_timestep")


def part_options(cls: Callable[..., Any], supplied: tuple[str, ...] = CORE_SUPPLIED) -> str:
    """A part's config options as ``name, name=default, ...`` (the keywords the core fills in left out)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return "?"
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    shown = [n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}" for n, p in params.items() if p.kind in kinds and n not in supplied]
    return ", ".join(shown) or "none"


ENCODERS: Registry = Registry("encoder", group="mmapps.encoders")
FUSIONS: Registry = Registry("fusion", group="mmapps.fusions")
HEADS: Registry = Registry("head", group="mmapps.heads")
METRICS: Registry = Registry("metric")
