"""The domain plugin API: one declarative object per domain, registered by entry point.

A third-party package makes a domain available with, in its ``pyproject.toml``::

    [project.entry-points."mmapps.domains"]
    myfield = "myfield_plugin:domain"

where ``myfield_plugin.domain`` is a `Domain`. The built-in domains are registered the same way.

This module must stay light: importing a domain's ``__init__`` must not import torch, monai,
open3d, transformers... (``mmapps --help`` and ``mmapps domains`` stay instant). Every callable
field therefore accepts either a callable or a lazy reference ``"package.module:attribute"``,
imported only when the field is used (see `resolve`).

Callable contracts (``cfg`` is the resolved `mmapps.config.RunConfig`):

- ``build_datasets(cfg) -> mmapps.data.DatasetSplits``: train/val/test datasets of
  `mmapps.data.Sample` built from ``cfg.data.root`` (the demo data when root is unset).
- ``write_demo_data(out: Path, n: int, seed: int) -> Path``: writes demo data in the real file
  formats under ``out`` and returns the data root to give ``build_datasets``.
- ``setup()``: imports the domain's heavy modules so that its encoders, fusions, heads and
  metrics are registered in the core registries; called once before a model is built.
- ``build_model(cfg, domain) -> nn.Module``: optional; the default is the core
  `mmapps.models.build_fusion_model` (encoders -> fusion -> heads).
- ``TaskSpec.postprocess(outputs, batch) -> list[dict]``: model outputs -> one JSON-able
  prediction per sample (scores, boxes, segments...).
- ``TaskSpec.metrics(records, cfg[, val_records]) -> dict[str, float]``: dataset-level metrics
  over the domain's own prediction format; ``records`` are `mmapps.evaluation.PredictionRecord`;
  a function that declares a ``val_records`` parameter also receives the validation records
  (thresholds chosen on validation). ``cfg.eval.bootstrap_resamples == 0`` means "no CIs"
  (the trainer's per-epoch validation).
- ``write_predictions(records, out_dir[, labels]) -> Path``: the domain's prediction file(s); a
  function that declares a ``labels`` parameter receives task name -> this run's label names.
- ``report_sections``: callables ``(context: mmapps.report.ReportContext) -> list[Section]``.
- ``batch_sampler(dataset, cfg, split) -> Sampler | None``: optional.
- ``extra_commands(app: typer.Typer)``: adds domain-specific CLI verbs; must import lazily.
- ``export(model, cfg, domain, example_batch) -> mmapps.export.adapter.ExportAdapter``: optional;
  how a model of the domain's own ``build_model`` becomes an ONNX graph (see `mmapps.export.adapter`).
- ``pretrain(cfg, domain, model) -> mmapps.pretrain.contract.PretrainParts``: optional; how the
  model's encoders and token fusion are reached and which modalities declare their own masking
  unit and target (see `mmapps.pretrain.contract`); core modality kinds need no hook.
- ``serve``: optional; a `mmapps.serve.hooks.ServeHooks` (its endpoints on the domain's raw
  formats, WebSocket routes, decoder imports, the upload de-identifier) or, the short form, a
  function ``add_routes(api: fastapi.APIRouter, state)`` adding ``POST /v1/<name>/predict`` to
  the predict router, built on `mmapps.serve.pipeline.serve_root`; without it a domain is served
  through ``/v1/<name>/predict-files`` (its readers and prediction writer) and the v2 tensor protocol.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping

ModalityKind = Literal["image", "text", "audio", "video", "pointcloud", "chat", "tabular", "features", "signal"]
Ref = Any  # a callable, or "package.module:attribute"


def resolve(ref: Ref) -> Any:
    """Return the object a lazy reference names (or the object itself when it is not a string)."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attribute = ref.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ModalitySpec:
    """A modality of a domain.

    Args:
        name: key in `Sample.inputs` and in the model's encoder dict.
        kind: what the data is (image, text, audio, video, pointcloud, chat, tabular, features, signal:
            multichannel 1-D samples ``(S, C)``, see `mmapps.readers.signal`).
        reader: human-readable name of the reader and accepted formats (shown by ``mmapps domains``).
        layout: how samples are collated: fixed, padded, packed or text (see `mmapps.data.sample`).
        optional: True when a sample may lack it (it can then be removed at test time).
    """

    name: str
    kind: ModalityKind
    reader: str
    layout: Literal["fixed", "padded", "packed", "text"] = "fixed"
    optional: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """A prediction task of a domain.

    Args:
        name: key in `Sample.targets` and in the model's output dict.
        head: head registry name (``multilabel``, ``multiclass``, ``regression``, ``timestep``...).
        labels: label names in output order (class names, findings, event classes).
        losses: loss name -> (lazy ref to ``fn(outputs, targets, batch) -> Tensor``, weight); the
            ref may name a class instead, built once per run as ``cls(cfg, train_set)`` and then
            called the same way (for losses that depend on the training data, e.g. pos_weight).
        postprocess: lazy ref, see module docstring.
        metrics: lazy ref, see module docstring.
        primary_metric: key of the metrics dict used for early stopping and model selection.
        higher_is_better: direction of the primary metric.
        bootstrap_metric: optional lazy ref to ``fn(records, cfg) -> Callable[[rows], float]``: the
            primary metric prepared once for a resampling loop (the label-efficiency study's paired
            bootstrap). The returned function takes integer row indices into `records` (repeats
            allowed) and returns the primary metric of that resample, equal to ``metrics`` on the
            same records. Without it, each resample calls ``metrics`` (every metric, slow).
        labels_option: key of ``cfg.data.options`` whose list, when the user sets it, replaces
            ``labels`` for that run (e.g. medical ``findings``); see `with_configured_labels`.
    """

    name: str
    head: str
    labels: tuple[str, ...]
    losses: Mapping[str, tuple[Ref, float]]
    postprocess: Ref
    metrics: Ref
    primary_metric: str
    higher_is_better: bool = True
    labels_option: str | None = None
    bootstrap_metric: Ref | None = None


@dataclass(frozen=True)
class TrainFlag:
    """A boolean ``train`` option a domain adds to its CLI, setting one config field to true.

    ``TrainFlag("allow-report-leakage", "data.options.allow_report_leakage", "...")`` makes
    ``mmapps medical train --allow-report-leakage`` equal to
    ``--set data.options.allow_report_leakage=true``; the field is validated like any other.

    Args:
        name: option name without the leading dashes (lower case, words joined by ``-``).
        path: dotted config field the flag sets to true.
        help: one line for ``--help``.
    """

    name: str
    path: str
    help: str

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("-") or not self.name.replace("-", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"train flag {self.name!r}: give the option name in lower case without dashes in front, e.g. 'allow-report-leakage'")

    @property
    def parameter(self) -> str:
        return "flag_" + self.name.replace("-", "_")


@dataclass(frozen=True)
class Domain:
    """Everything mmapps needs to know about a field. See the module docstring for contracts.

    Args:
        name: CLI name (``mmapps <name> train``).
        description: one line for ``mmapps domains`` and ``--help``.
        modalities: the domain's inputs.
        tasks: the domain's outputs; the first task's primary metric selects models.
        build_datasets: lazy ref.
        write_demo_data: lazy ref.
        recipes: recipe name -> nested dict of config values over the core defaults
            (``default`` and ``smoke`` are required; ``quick`` is used by ``benchmark``).
        fusions: core (or domain-registered) fusion names that apply to this domain.
        baselines: modality subsets trained as baselines by ``benchmark``; None = each modality alone.
        write_predictions: lazy ref; None -> JSONL of the prediction records.
        setup: lazy ref, called once before building a model; None when nothing to register.
        build_model: lazy ref; None -> the core encoders -> fusion -> heads model.
        batch_sampler: lazy ref or None.
        report_sections: lazy refs adding domain sections to ``report.md``.
        extra_commands: lazy ref or None.
        data_options: lazy ref to a pydantic model of domain-specific ``data.options``.
        headline_metrics: metric keys shown in the report summary and printed by ``train`` (fnmatch
            patterns allowed); empty = all scalar metrics.
        install_hint: printed when the domain fails to import (e.g. ``pip install 'mmapps[x]'``).
        train_flags: domain-specific boolean ``train`` options, each setting a config field.
        demo_version: bump it when ``write_demo_data`` changes what it writes: the cached demo
            folder is named by it, so an old cache is not reused silently.
        export: lazy ref or None; the ONNX export adapter factory (module docstring).
        pretrain: lazy ref or None; the self-supervised pretraining hook (module docstring).
        serve: lazy ref or None; the domain's own service endpoints (module docstring).
        intended_use: one sentence for the model cards of served and exported models: what the
            model is for and what it must not be used for.
    """

    name: str
    description: str
    modalities: tuple[ModalitySpec, ...]
    tasks: tuple[TaskSpec, ...]
    build_datasets: Ref
    write_demo_data: Ref
    recipes: Mapping[str, Mapping[str, Any]]
    fusions: tuple[str, ...] = ("concat", "late", "attention", "gated", "lmf")
    baselines: tuple[tuple[str, ...], ...] | None = None
    write_predictions: Ref | None = None
    setup: Ref | None = None
    build_model: Ref | None = None
    batch_sampler: Ref | None = None
    report_sections: tuple[Ref, ...] = ()
    extra_commands: Ref | None = None
    data_options: Ref | None = None
    headline_metrics: tuple[str, ...] = ()
    install_hint: str = "pip install mmapps"
    train_flags: tuple[TrainFlag, ...] = ()
    demo_version: int = 1
    export: Ref | None = None
    pretrain: Ref | None = None
    serve: Ref | None = None
    intended_use: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for required in ("default", "smoke"):
            if required not in self.recipes:
                raise ValueError(f"domain {self.name!r}: recipes must include {required!r}; found {sorted(self.recipes)}")
        if not self.tasks:
            raise ValueError(f"domain {self.name!r}: declares no task")

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def baseline_subsets(self) -> tuple[tuple[str, ...], ...]:
        return self.baselines if self.baselines is not None else tuple((m,) for m in self.modality_names)

    @property
    def removable_modalities(self) -> tuple[str, ...]:
        """Modalities that may be dropped at test time or left out of a baseline."""
        return tuple(m.name for m in self.modalities if m.optional)

    def modality(self, name: str) -> ModalitySpec:
        for spec in self.modalities:
            if spec.name == name:
                return spec
        raise KeyError(f"domain {self.name!r} has no modality {name!r}; it has {list(self.modality_names)}")

    def task(self, name: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise KeyError(f"domain {self.name!r} has no task {name!r}; it has {[t.name for t in self.tasks]}")

    @property
    def primary_task(self) -> TaskSpec:
        return self.tasks[0]


def with_configured_labels(domain: Domain, cfg: Any) -> Domain:
    """``domain`` with each task's labels taken from ``cfg.data.options[task.labels_option]`` when set.

    The workflows call this once per run, so the heads, the checkpoint's label map, metrics and
    reports all see the same label list.
    """
    options = getattr(getattr(cfg, "data", None), "options", None) or {}
    tasks = []
    for task in domain.tasks:
        labels = options.get(task.labels_option) if task.labels_option else None
        if labels is not None and (isinstance(labels, str) or not all(isinstance(x, str) for x in labels) or not labels):
            from mmapps.errors import ConfigError

            raise ConfigError(f"data.options.{task.labels_option}: expected a non-empty list of label names; found {labels!r}")
        tasks.append(replace(task, labels=tuple(labels)) if labels is not None else task)
    return replace(domain, tasks=tuple(tasks)) if tasks != list(domain.tasks) else domain
