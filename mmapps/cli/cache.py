"""``mmapps cache info|clear``: the preprocessed-sample cache folder (`mmapps.data.cache`)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Optional

import typer

from mmapps.cli.errors import user_errors


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _folder(directory: Optional[Path]) -> Path:
    from mmapps.data.cache import default_cache_dir

    return directory.expanduser() if directory is not None else default_cache_dir()


def build_cache_app() -> typer.Typer:
    app = typer.Typer(help="The preprocessed-sample cache: where it is, what it holds, clearing it.", no_args_is_help=True, add_completion=False)
    dir_option = typer.Option(None, "--dir", help="cache folder (default: $MMAPPS_CACHE_DIR, else ~/.cache/mmapps/samples); use a run's cache.dir if it set one")

    @app.command("info")
    @user_errors
    def info(directory: Optional[Path] = dir_option) -> None:
        """Folder, size, entries per domain, the default cap and the signing key's location."""
        from mmapps.data.cache import DEFAULT_MAX_GB
        from mmapps.data.cache_secret import key_file_path
        from mmapps.data.cache_store import usage

        root, key = _folder(directory), key_file_path()
        use = usage(root)
        mode = f"{stat.S_IMODE(root.stat().st_mode):04o}" if root.is_dir() else "not created yet"
        typer.echo(f"folder:  {root} (mode {mode})")
        typer.echo(f"size:    {_size(sum(u.bytes for u in use.values()))} in {sum(u.entries for u in use.values())} entries")
        typer.echo(f"cap:     {DEFAULT_MAX_GB:g} GiB by default (cache.max_size_gb; least recently used entries are evicted beyond it)")
        typer.echo(f"key:     {key} ({'present' if key.is_file() else 'created on first use'}; entries signed by another key are refused)")
        for domain, u in use.items():
            extra = "".join(f", {n} {what}" for n, what in ((u.temporary, "temporary file(s)"), (u.other, "other file(s), never read")) if n)
            typer.echo(f"  {domain:<14} {u.entries:>7} entries  {_size(u.bytes):>10}{extra}")

    @app.command("clear")
    @user_errors
    def clear(domain: Optional[str] = typer.Option(None, "--domain", help="clear only this domain's entries"), directory: Optional[Path] = dir_option) -> None:
        """Delete the cache's entries (of one domain with --domain); files the cache did not write stay."""
        from mmapps.data.cache_store import clear as clear_folder
        from mmapps.data.cache_store import usage

        root = _folder(directory)
        if domain is not None and domain not in usage(root):
            known = ", ".join(usage(root)) or "none"
            typer.echo(f"nothing to clear: {root} holds no entries of domain {domain!r} (domains in the cache: {known})")
            return
        removed, freed = clear_folder(root, domain)
        typer.echo(f"cleared {removed} file(s), {_size(freed)} from {root / domain if domain else root}")

    return app
