"""``mmapps``: the root Typer app; one sub-app per installed domain, mounted from entry points.

Nothing heavy is imported here: ``mmapps --help`` and ``mmapps domains`` never import torch.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from mmapps.cli.cache import build_cache_app
from mmapps.cli.errors import DEBUG
from mmapps.cli.verbs import build_domain_app
from mmapps.plugins import discover_domains


def build_app() -> typer.Typer:
    app = typer.Typer(
        help="mmapps: fine-tune multimodal models on your own data and get the evaluation your field trusts.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(debug: bool = typer.Option(False, "--debug", help="show full tracebacks on errors")) -> None:
        DEBUG["enabled"] = debug

    @app.command("domains")
    def domains() -> None:
        """List installed domains with their modalities, tasks and status."""
        for entry in discover_domains():
            if entry.domain is None:
                typer.echo(f"{entry.name:<14} BROKEN  {entry.error}\n{'':<14} install hint: {entry.install_hint}")
                continue
            d = entry.domain
            modalities = ", ".join(f"{m.name}({m.kind})" for m in d.modalities)
            tasks = ", ".join(f"{t.name}[{t.head}, {len(t.labels)} labels]" for t in d.tasks)
            typer.echo(f"{entry.name:<14} ok      {d.description}\n{'':<14} modalities: {modalities}\n{'':<14} tasks: {tasks}\n{'':<14} from: {entry.distribution}")

    @app.command("parts")
    def parts(
        pattern: str = typer.Argument("*", help="fnmatch pattern of part names, e.g. 'signal*'"),
        kind: Optional[str] = typer.Option(None, "--kind", help="only encoder, fusion or head"),
        options: bool = typer.Option(False, "--options", help="also print each part's config options and defaults"),
    ) -> None:
        """List the encoders, fusions and heads you can name in a config: core, domain and plugin-provided."""
        from mmapps.plugins import list_parts

        if kind not in (None, "encoder", "fusion", "head"):
            raise typer.BadParameter(f"found {kind!r}; expected encoder, fusion or head", param_hint="--kind")
        listing = list_parts(pattern, (kind,) if kind else ("encoder", "fusion", "head"))
        for p in listing.parts:
            typer.echo(f"{p.kind:<8} {p.name:<22} {p.source:<22} {p.target if p.error is None else 'BROKEN'}")
            if options and p.options is not None:
                typer.echo(f"{'':<9}options: {p.options}")
        for line in listing.broken:
            typer.echo(f"broken: {line}", err=True)

    from mmapps.scaffold.cli import add_new_domain_command

    add_new_domain_command(app)
    app.add_typer(build_cache_app(), name="cache", help="The preprocessed-sample cache: info, clear.")
    for entry in discover_domains():
        app.add_typer(build_domain_app(entry), name=entry.name, help=entry.domain.description if entry.domain else f"(failed to load: {entry.error})")
    return app


app = build_app()


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
