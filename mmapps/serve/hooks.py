"""What a domain plugs into the service (``Domain.serve``), so the core names no domain.

``Domain.serve`` names either a `ServeHooks` object or, the short form, a function
``add_routes(api, state)`` (the same as ``ServeHooks(routes=add_routes)``):

- ``routes(api, state)``: the domain's HTTP endpoints on its raw formats
  (``POST /v1/<name>/predict``), added to the predict router (the ``predict`` scope is checked
  for them), built on `mmapps.serve.pipeline.serve_root`;
- ``socket_routes(state) -> APIRouter``: routes included at the application level that check
  their key themselves (a WebSocket cannot go through the HTTP dependency), e.g. the
  surveillance live stream;
- ``decoder_imports``: modules every decoder child imports before its memory cap (the readers'
  heavy libraries: importing them after the cap could fail);
- ``prepare_upload``: ``"module:function"`` run in the decoder child on each upload that asks
  for de-identification (``RequestRoot.deidentify``), before any reader opens it:
  ``(root: Path, key_hex: str) -> list[str]``, de-identifying in place and returning the
  identifier values it read (removed from every message the child sends back). An upload that
  asks for de-identification from a domain without it is refused, never read as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmapps.domain import resolve
from mmapps.errors import DomainLoadError


@dataclass(frozen=True)
class ServeHooks:
    """A domain's contributions to ``mmapps <domain> serve`` (module docstring)."""

    routes: Callable[[Any, Any], None] | None = None
    socket_routes: Callable[[Any], Any] | None = None
    decoder_imports: tuple[str, ...] = ()
    prepare_upload: str | None = None


def serve_hooks(domain: Any) -> ServeHooks:
    """The `ServeHooks` of a domain (empty when it declares none)."""
    ref = getattr(domain, "serve", None)
    if ref is None:
        return ServeHooks()
    try:
        hooks = resolve(ref)
    except (ImportError, AttributeError) as err:
        raise DomainLoadError(f"domain {domain.name!r}: Domain.serve = {ref!r} cannot be imported ({type(err).__name__}: {err})") from None
    if isinstance(hooks, ServeHooks):
        return hooks
    if callable(hooks):
        return ServeHooks(routes=hooks)
    raise DomainLoadError(f"domain {domain.name!r}: Domain.serve = {ref!r} is a {type(hooks).__name__}; expected a "
                      "mmapps.serve.hooks.ServeHooks or a function add_routes(api, state)")
