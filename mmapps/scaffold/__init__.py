"""``mmapps new-domain``: generate a complete, installable domain plugin package.

The package holds a pyproject with the ``mmapps.domains`` entry point, the `Domain`, a reader
and a demo writer in the real file formats, and tests built on `mmapps.testing`; it passes its own
tests and trains at once. ``examples/mmapps-shapes`` is its output (checked by the test suite).

Example::

    from mmapps.scaffold import new_domain
    new_domain("ecg", "signal,note:text", "multilabel", out=Path("mmapps-ecg"))
"""

from __future__ import annotations

from pathlib import Path

from mmapps.scaffold.render import check_task_functions, command_line, render_files, write_plugin
from mmapps.scaffold.spec import PluginSpec, parse_spec

__all__ = ["PluginSpec", "command_line", "new_domain", "parse_spec", "render_files", "write_plugin"]


def new_domain(name: str, modalities: str, task: str, out: Path | None = None, labels: str | None = None, task_name: str | None = None, description: str | None = None, force: bool = False) -> Path:
    """Write the plugin package ``mmapps-<name>`` (into `out`, default ``./mmapps-<name>``) and return its folder.

    Raises:
        ConfigError: a bad argument (named, with what is accepted) or a non-empty `out`.
        WriteError: a file could not be written.
    """
    spec = parse_spec(name, modalities, task, labels, task_name, description)
    check_task_functions(spec)
    return write_plugin(spec, Path(out) if out is not None else Path(spec.distribution), force)
