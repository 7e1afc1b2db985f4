"""Turn user mistakes into one-paragraph messages and meaningful exit codes (tracebacks only with --debug)."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import typer

from mmapps.errors import MmappsError, WriteError

DEBUG = {"enabled": False}


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command functions: MmappsError (and unreadable files) -> message + exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (MmappsError, FileNotFoundError, PermissionError) as err:
            if DEBUG["enabled"]:
                raise
            code = err.exit_code if isinstance(err, MmappsError) else 2
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code) from None
        except OSError as err:  # full disk, quota, read-only or failing device, anywhere in a command
            if DEBUG["enabled"]:
                raise
            where = err.filename or "an output file"
            typer.echo(f"error: {WriteError.from_os_error(where, err)}", err=True)
            raise typer.Exit(WriteError.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; resume with --resume <run directory>", err=True)
            raise typer.Exit(130) from None

    return wrapper


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def echo_err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
