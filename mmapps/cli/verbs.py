"""The verbs every domain gets, from one factory: demo-data, train, evaluate, predict, benchmark, info."""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import typer

from mmapps.cli.errors import fail, user_errors
from mmapps.domain import TrainFlag, resolve
from mmapps.plugins import DomainEntry, get_domain


MAX_PRINTED_METRICS = 30
VERBS = ("demo-data", "train", "evaluate", "predict", "benchmark", "info", "check", "pretrain", "export", "prune", "serve")
# The life-cycle verbs beyond training each live in their own module with one function,
# ``register(app, name)``, that adds its commands to a domain's sub-app.
VERB_MODULES = ("mmapps.cli.verb_pretrain", "mmapps.cli.verb_export", "mmapps.cli.verb_prune", "mmapps.cli.verb_serve")


def build_domain_app(entry: DomainEntry) -> typer.Typer:
    """A Typer sub-app for one installed domain (or one that explains why the domain failed to load)."""
    app = typer.Typer(help=entry.domain.description if entry.domain else f"(failed to load: {entry.error})", no_args_is_help=True, add_completion=False)
    name = entry.name
    if entry.domain is None:
        message = f"domain {name!r} failed to import: {entry.error}. Install hint: {entry.install_hint}"

        def broken(args: Optional[List[str]] = typer.Argument(None)) -> None:
            fail(message, code=5)

        for verb in VERBS:
            app.command(verb, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, help=message)(broken)
        return app

    @app.command("demo-data")
    @user_errors
    def demo_data(out: Path = typer.Option(..., "--out", help="folder to write the demo dataset into"), n: int = typer.Option(200, "--n", min=4, help="number of samples"), seed: int = typer.Option(0, help="generator seed")) -> None:
        """Write the domain's synthetic demo dataset in its real file formats."""
        root = resolve(get_domain(name).write_demo_data)(out, n, seed)
        typer.echo(f"demo data written: {root}")

    @user_errors
    def train(
        recipe: Optional[str] = typer.Option(None, help="named recipe (see `info`); default: default"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file of config values (may name a recipe)"),
        set_: List[str] = typer.Option([], "--set", help="override a field: --set train.lr=3e-4 (repeatable)"),
        data: Optional[Path] = typer.Option(None, "--data", help="data root; default: the demo data (written once to a cache folder)"),
        out: Optional[Path] = typer.Option(None, "--out", help="run directory; default runs/<domain>-<recipe>-..."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="continue the run in this directory from its last checkpoint"),
        on_error: Optional[str] = typer.Option(None, "--on-error", help="skip or stop on a bad input file"),
        seed: Optional[int] = typer.Option(None, help="random seed"),
        init: Optional[Path] = typer.Option(None, "--init", help="start from a pretraining run folder (mmapps <domain> pretrain) or a .safetensors checkpoint, by parameter name"),
        init_partial: bool = typer.Option(False, "--init-partial", help="with --init: skip (and list) tensors whose shape differs or that this model lacks, e.g. another fusion"),
    ) -> None:
        """Train the model, test the best checkpoint, write metrics, predictions and report."""
        from mmapps.workflows.resolve import resolve_config
        from mmapps.workflows.run import train as run_train

        domain = get_domain(name)
        extra: dict[str, Any] = {}
        if data is not None:
            extra.setdefault("data", {})["root"] = str(data)
        if on_error is not None:
            extra.setdefault("data", {})["on_error"] = on_error
        if seed is not None:
            extra["seed"] = seed
        if out is not None or resume is not None:
            extra["out_dir"] = str(resume or out)
        cfg = resolve_config(domain, recipe, config, set_, extra)
        result = run_train(cfg, domain, resume=resume is not None, init=init, init_partial=init_partial)
        _print_result(result, domain)

    app.command("train")(with_train_flags(train, entry.domain.train_flags))

    @app.command("evaluate")
    @user_errors
    def evaluate(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="a .safetensors checkpoint written by train, or an export folder / its model.onnx written by export"),
        data: Optional[Path] = typer.Option(None, "--data", help="data root (default: the one the model was trained on)"),
        out: Optional[Path] = typer.Option(None, "--out", help="output folder (default <run>/eval)"),
        drop_modality: List[str] = typer.Option([], "--drop-modality", help="remove a modality at test time (repeatable)"),
        on_error: Optional[str] = typer.Option(None, "--on-error", help="skip or stop on a bad input file"),
        set_: List[str] = typer.Option([], "--set", help="override a field: --set data.options.iou_precision=float32 (repeatable)"),
    ) -> None:
        """Evaluate a checkpoint on the test split: metrics, predictions, report."""
        from mmapps.config import deep_merge, parse_override
        from mmapps.workflows.run import evaluate as run_evaluate

        overrides: dict[str, Any] = {"data": {}}
        for text in set_:
            overrides = deep_merge(overrides, parse_override(text))
        if data is not None:
            overrides["data"]["root"] = str(data)
        if on_error is not None:
            overrides["data"]["on_error"] = on_error
        domain = get_domain(name)
        unknown = [m for m in drop_modality if m not in domain.modality_names]
        if unknown:
            fail(f"--drop-modality {unknown}: not modalities of {name!r}; it has {list(domain.modality_names)}")
        _print_result(run_evaluate(checkpoint, domain, out, overrides, drop_modality), domain)

    @app.command("predict")
    @user_errors
    def predict(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="a .safetensors checkpoint written by train, or an export folder / its model.onnx written by export"),
        data: Path = typer.Option(..., "--data", help="data root to predict on"),
        out: Path = typer.Option(Path("predictions"), "--out", help="output folder"),
        split: str = typer.Option("test", help="train, val or test"),
        set_: List[str] = typer.Option([], "--set", help="override a data field: --set data.options.x=y (repeatable)"),
    ) -> None:
        """Write predictions for one split of a dataset."""
        from mmapps.config import deep_merge, parse_override
        from mmapps.workflows.run import predict as run_predict

        overrides: dict[str, Any] = {}
        for text in set_:
            overrides = deep_merge(overrides, parse_override(text))
        path = run_predict(checkpoint, get_domain(name), data, out, split, overrides)
        typer.echo(f"predictions: {path}")

    @app.command("benchmark")
    @user_errors
    def benchmark(
        preset: str = typer.Option("quick", help="quick (minutes on a CPU) or full (the default recipe); with --study label-efficiency also smoke, controls, tuned or quick-tuned (docs/pretraining.md)"),
        seeds: int = typer.Option(3, min=1, help="seeds per configuration"),
        out: Path = typer.Option(Path(f"runs/{name}-benchmark"), "--out", help="output folder"),
        set_: List[str] = typer.Option([], "--set", help="override a field in every run (repeatable)"),
        fusion: List[str] = typer.Option([], "--fusion", help="only these fusions (repeatable)"),
        study: Optional[str] = typer.Option(None, "--study", help="label-efficiency: pretrained vs scratch over label budgets (docs/pretraining.md)"),
        cached_only: bool = typer.Option(False, "--cached-only", help="--study: train nothing; report the runs already finished in --out"),
        control: List[str] = typer.Option([], "--control", help="--study: run these controls instead of the preset's (repeatable; linear_probe, compute_matched, "
                                          "shuffled_pairs, lora, missing_modality, modality_dropout, unimodal)"),
    ) -> None:
        """Every fusion and single-modality baseline over K seeds, plus missing-modality robustness; or a --study."""
        from mmapps.workflows.benchmark import run_benchmark

        if study is None and preset not in ("quick", "full"):
            fail(f"--preset {preset!r}: expected quick or full")
        if study is None and control:
            fail("--control selects the label-efficiency study's controls: add --study label-efficiency")
        if study is not None:
            if study != "label-efficiency":
                fail(f"--study {study!r}: expected label-efficiency")
            from mmapps.workflows.label_efficiency import run_label_efficiency

            path = run_label_efficiency(get_domain(name), preset, out, set_, seeds, cached_only=cached_only, controls=control or None)
            typer.echo(path.read_text())
            typer.echo(f"study report: {path}")
            return
        path = run_benchmark(get_domain(name), preset, seeds, out, set_, fusion or None)
        typer.echo(path.read_text())
        typer.echo(f"benchmark report: {path}")

    @app.command("info")
    @user_errors
    def info(
        recipe: Optional[str] = typer.Option(None, help="print this recipe's resolved config"),
        set_: List[str] = typer.Option([], "--set", help="with --recipe: override a field, e.g. finetune.parts.fusion.mode=lora (repeatable)"),
    ) -> None:
        """Modalities, tasks, recipes and fusions of the domain."""
        domain = get_domain(name)
        if recipe:
            from mmapps.config import config_to_yaml
            from mmapps.workflows.resolve import resolve_config

            cfg = resolve_config(domain, recipe, overrides=set_)
            typer.echo(config_to_yaml(cfg))
            from mmapps.finetune import apply_finetune, format_summary, parameter_summary
            from mmapps.models.build import build_model

            model = build_model(cfg, domain)
            apply_finetune(model, cfg.finetune)
            typer.echo(f"parameters (recipe {recipe}, finetune modes applied):\n{format_summary(parameter_summary(model))}")
            return
        typer.echo(f"{domain.name}: {domain.description}")
        typer.echo("modalities:")
        for m in domain.modalities:
            typer.echo(f"  {m.name:<14} {m.kind:<10} {m.layout:<7} {'optional' if m.optional else 'required'}  {m.reader}")
        typer.echo("tasks:")
        for t in domain.tasks:
            typer.echo(f"  {t.name:<14} head={t.head} labels={len(t.labels)} primary={t.primary_metric} losses={', '.join(t.losses)}")
        typer.echo(f"recipes: {', '.join(sorted(domain.recipes))}")
        typer.echo(f"fusions: {', '.join(domain.fusions)}")
        typer.echo(f"baselines: {', '.join('+'.join(s) for s in domain.baseline_subsets())}")

    @app.command("check")
    @user_errors
    def check(
        data: Optional[Path] = typer.Option(None, "--data", help="check on this data root instead of the demo data"),
        set_: List[str] = typer.Option([], "--set", help="override a field: --set data.options.x=y (repeatable)"),
        recipe: str = typer.Option("smoke", help="the recipe whose model is built"),
    ) -> None:
        """Run the plugin self-test: every contract of the domain on a few real samples, in seconds."""
        from mmapps.testing import check_domain

        typer.echo(check_domain(get_domain(name), data=data, overrides=set_, recipe=recipe).format())

    for module_name in VERB_MODULES:
        importlib.import_module(module_name).register(app, name)

    if entry.domain.extra_commands is not None:
        try:
            resolve(entry.domain.extra_commands)(app)
        except Exception as err:  # a broken plugin command must not break the other verbs or domains
            app.info.help = f"{app.info.help} (its extra commands failed to load: {type(err).__name__}: {err})"
    return app


def with_train_flags(command: Callable[..., None], flags: Sequence[TrainFlag]) -> Callable[..., None]:
    """Give the ``train`` command one boolean ``--<name>`` option per domain `TrainFlag`.

    Each flag given is the same as ``--set <path>=true``, so it goes through the same validation.
    """
    if not flags:
        return command
    signature = inspect.signature(command, eval_str=True)
    options = [
        inspect.Parameter(flag.parameter, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(False, f"--{flag.name}", help=flag.help), annotation=bool)
        for flag in flags
    ]

    @functools.wraps(command)
    def with_flags(**values: Any) -> None:
        chosen = [flag for flag in flags if values.pop(flag.parameter)]
        values["set_"] = [*values["set_"], *(f"{flag.path}=true" for flag in chosen)]
        command(**values)

    with_flags.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *options])  # type: ignore[attr-defined]
    with_flags.__annotations__ = {**{p.name: p.annotation for p in signature.parameters.values()}, **{flag.parameter: bool for flag in flags}}
    return with_flags


def _print_result(result: Any, domain: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    if result.report is None:  # a non-main process under torchrun: rank 0 prints
        return
    table = Table(title=f"test metrics ({result.run_dir})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    from mmapps.report.model import headline_metrics

    shown = list(headline_metrics(result.metrics, domain.headline_metrics).items())
    for key, value in shown[:MAX_PRINTED_METRICS]:
        low, high = result.metrics.get(f"{key}/ci_low"), result.metrics.get(f"{key}/ci_high")
        ci = f"  [{low:.3f}, {high:.3f}]" if isinstance(low, float) and isinstance(high, float) else ""
        table.add_row(key, f"{value:.4f}{ci}")
    Console(width=120).print(table)
    if len(shown) > MAX_PRINTED_METRICS:
        typer.echo(f"... and {len(shown) - MAX_PRINTED_METRICS} more in {result.run_dir / 'metrics.json'}")
    typer.echo(f"report: {result.report}")
    typer.echo(f"predictions: {result.predictions}")
