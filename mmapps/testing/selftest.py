"""`check_domain`: the plugin self-test; `preflight`: its cheap part, run by ``train`` before the first epoch."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mmapps.domain import Domain, resolve, with_configured_labels
from mmapps.testing import steps
from mmapps.testing.errors import ContractError, raised


@dataclass
class CheckReport:
    """What the self-test ran: step name -> seconds, and facts worth printing."""

    domain: str
    steps: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"{self.domain}: every contract holds ({sum(self.steps.values()):.1f} s)"]
        lines += [f"  ok  {name:<18} {seconds:6.2f} s" for name, seconds in self.steps.items()]
        lines += [f"  {key}: {value}" for key, value in self.facts.items()]
        return "\n".join(lines)


class _Timer:
    def __init__(self, report: CheckReport) -> None:
        self.report, self.last = report, time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.report.steps[step] = now - self.last
        self.last = now


def check_declaration(domain: Domain) -> None:
    """Static checks: every lazy reference imports, data_options is a pydantic model, tasks are well formed."""
    refs: list[tuple[str, Any]] = [("Domain.build_datasets", domain.build_datasets), ("Domain.write_demo_data", domain.write_demo_data)]
    refs += [(f"Domain.{name}", getattr(domain, name)) for name in ("write_predictions", "setup", "build_model", "batch_sampler", "data_options") if getattr(domain, name) is not None]
    refs += [("Domain.report_sections", ref) for ref in domain.report_sections]
    for task in domain.tasks:
        refs += [(f"TaskSpec.postprocess of task {task.name!r}", task.postprocess), (f"TaskSpec.metrics of task {task.name!r}", task.metrics)]
        refs += [(f"TaskSpec.losses[{name!r}] of task {task.name!r}", ref) for name, (ref, _) in task.losses.items()]
        refs += [(f"TaskSpec.bootstrap_metric of task {task.name!r}", task.bootstrap_metric)] if task.bootstrap_metric is not None else []
        if not task.labels or not all(isinstance(x, str) for x in task.labels):
            raise ContractError(domain.name, "declaration", f"TaskSpec.labels of task {task.name!r} is {task.labels!r}, expected a non-empty tuple of label names (str)")
    for where, ref in refs:
        try:
            obj = resolve(ref)
        except Exception as err:
            raise ContractError(domain.name, "declaration", f"{where} = {ref!r} does not import: {raised(err)}; a lazy reference reads 'package.module:attribute'") from err
        if where == "Domain.data_options":
            from pydantic import BaseModel

            if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
                raise ContractError(domain.name, "declaration", f"Domain.data_options = {ref!r} is {obj!r}, expected a pydantic BaseModel subclass (its validated values reach build_datasets as the plain dict cfg.data.options)")
        elif not callable(obj):
            raise ContractError(domain.name, "declaration", f"{where} = {ref!r} is {type(obj).__name__}, expected a callable")


def check_domain(domain: Domain, workdir: Path | None = None, data: Path | None = None, overrides: Sequence[str] = (), recipe: str = "smoke") -> CheckReport:
    """Run the whole plugin self-test on a few real samples; return what ran, or raise `ContractError`.

    Writes the demo data (once, in the demo cache) unless `data` is given, builds the datasets,
    collates a batch, runs every configured encoder and the model once, a backward pass through the
    losses, postprocess, metrics (with and without CIs), ``write_predictions`` on labelled and on
    unlabelled records, and the report sections. Runs on the CPU in seconds.

    Args:
        domain: the domain (e.g. ``mmapps.plugins.get_domain("ecg")``).
        workdir: where outputs go (a temporary folder when None).
        data: a data root to check instead of the demo data.
        overrides: ``--set`` style ``key=value`` strings.
        recipe: the recipe whose model is built (``smoke``: small).

    Raises:
        ContractError: the first broken contract, naming the field, what was found and what is expected.
        MmappsError: the plugin's own user-facing errors (bad data, bad options) as they are.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=f"mmapps-check-{domain.name}-") as tmp:
            return check_domain(domain, Path(tmp), data, overrides, recipe)
    from mmapps.models.build import selected_modalities
    from mmapps.train.runtime import setup_runtime
    from mmapps.workflows.resolve import ensure_data_root, resolve_config

    report = CheckReport(domain.name)
    timer = _Timer(report)
    check_declaration(domain)
    extra = {"data": {"root": str(data)}} if data is not None else {}
    cfg = resolve_config(domain, recipe, overrides=[*overrides, "train.device=cpu", "train.progress=false", f"out_dir={workdir / 'run'}"], extra=extra)
    cfg = ensure_data_root(cfg, domain)
    domain = with_configured_labels(domain, cfg)
    timer.done("declaration")
    splits = steps.build_splits(cfg, domain)
    report.facts["samples"] = f"train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)}; {splits.issues.summary()}"
    if len(splits.train) == 0:
        raise ContractError(domain.name, "datasets", f"build_datasets found no training sample in {cfg.data.root} ({splits.issues.summary()})")
    timer.done("datasets")
    runtime = setup_runtime(cfg.train)
    modalities = selected_modalities(cfg, domain)
    with steps.rng_preserved():
        samples = steps.pick_samples(domain, splits.train, "train")
        timer.done("samples")
        batch = steps.collate(domain, samples, modalities)
        timer.done("batch")
        model = build_model_checked(cfg, domain)
        steps.check_encoders(cfg, domain, batch, model)
        timer.done("encoders")
        outputs = steps.run_model(domain, cfg, model, batch, runtime)
        timer.done("model")
        check_losses(domain, cfg, model, batch, splits.train)
        timer.done("losses")
        records = steps.make_records(domain, outputs, batch)
        timer.done("postprocess")
        quick = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"bootstrap_resamples": 0})})
        steps.check_metrics(domain, quick, records)
        with_ci = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"bootstrap_resamples": 20})})
        metrics = steps.check_metrics(domain, with_ci, records)
        timer.done("metrics")
        written = steps.check_write_predictions(domain, records, workdir / "predictions")
        report.facts["predictions"] = written.name
        timer.done("write_predictions")
        bare = steps.unlabelled(samples)
        bare_batch = steps.collate(domain, bare, modalities)
        bare_records = steps.make_records(domain, steps.run_model(domain, cfg, model, bare_batch, runtime), bare_batch, labelled=False)
        steps.check_write_predictions(domain, bare_records, workdir / "unlabelled", step="unlabelled")
        timer.done("unlabelled")
        check_report(domain, cfg, workdir, metrics, records, model, samples)
        timer.done("report")
    return report


def check_losses(domain: Domain, cfg: Any, model: Any, batch: Any, train_set: Any) -> None:
    """Each loss on the batch is a finite scalar and its gradient reaches the model."""
    import torch

    from mmapps.train.trainer import build_loss

    model.train()
    outputs = model(batch)
    total = None
    for task in domain.tasks:
        if task.name not in batch.targets:
            raise ContractError(domain.name, "losses", f"the training samples carry no target for task {task.name!r} (Sample.targets lacks it): train needs labelled data; predict works without")
        for name, (ref, _) in task.losses.items():
            fn = steps.call(domain, "losses", "TaskSpec.losses", build_loss, ref, cfg, train_set, hint=f" (building loss {name!r} of task {task.name!r})")
            value = steps.call(domain, "losses", "TaskSpec.losses", fn, outputs[task.name], batch.targets[task.name], batch, hint=f" (loss {name!r} of task {task.name!r})")
            if not isinstance(value, torch.Tensor) or value.dim() != 0 or not bool(torch.isfinite(value.detach())):
                raise ContractError(domain.name, "losses", f"loss {name!r} of task {task.name!r} returned {value!r:.80}, expected a finite scalar Tensor")
            total = value if total is None else total + value
    if total is not None and total.requires_grad:
        total.backward()
        if not any(p.grad is not None for p in model.parameters()):
            raise ContractError(domain.name, "losses", "no gradient reached any model parameter through the losses")
    model.zero_grad(set_to_none=True)
    model.eval()


def check_report(domain: Domain, cfg: Any, workdir: Path, metrics: dict[str, Any], records: dict[str, list[Any]], model: Any, samples: Sequence[Any]) -> None:
    from mmapps.report import ReportContext, Section

    if not domain.report_sections:
        return
    figures = workdir / "run" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(cfg, domain, workdir / "run", figures, dict(metrics), records, records, model, list(samples), [], [], {})
    for ref in domain.report_sections:
        sections = steps.call(domain, "report", "Domain.report_sections", resolve(ref), ctx, hint=f" ({ref})")
        if not isinstance(sections, list) or not all(isinstance(s, Section) for s in sections):
            raise ContractError(domain.name, "report", f"report section {ref!r} returned {steps.type_name(sections)}, expected list[mmapps.report.Section]")


def preflight(cfg: Any, domain: Domain, model: Any, splits: Any, modalities: Sequence[str], runtime: Any) -> None:
    """The cheap part of the self-test, before the first epoch: a few samples through the model,
    postprocess, metrics and ``write_predictions`` (labelled and unlabelled) into a temporary folder.

    RNG states are left untouched, so a run (and its exact resume) is the same with or without it.

    Raises:
        ContractError: in seconds, instead of a traceback after training.
    """
    source, name = (splits.val, "val") if len(splits.val) >= 2 else (splits.train, "train")
    with steps.rng_preserved(runtime.device), tempfile.TemporaryDirectory(prefix="mmapps-preflight-") as tmp:
        train_batch = steps.collate(domain, steps.pick_samples(domain, splits.train, "train", 2), modalities)
        missing = [t.name for t in domain.tasks if t.name not in train_batch.targets]
        if missing:
            raise ContractError(domain.name, "datasets", f"the training samples carry no target for task(s) {missing} (Sample.targets lacks them): train needs labelled data; predict works without")
        samples = steps.pick_samples(domain, source, name, 4)
        batch = steps.collate(domain, samples, modalities)
        records = steps.make_records(domain, steps.run_model(domain, cfg, model, batch, runtime), batch)
        quick = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"bootstrap_resamples": 0})})
        steps.check_metrics(domain, quick, records)
        steps.check_write_predictions(domain, records, Path(tmp) / "labelled")
        bare = steps.collate(domain, steps.unlabelled(samples), modalities)
        bare_records = steps.make_records(domain, steps.run_model(domain, cfg, model, bare, runtime), bare, labelled=False)
        steps.check_write_predictions(domain, bare_records, Path(tmp) / "unlabelled", step="unlabelled")


def build_model_checked(cfg: Any, domain: Domain) -> Any:
    """`mmapps.models.build.build_model`, with a broken part (no ``out_dim``, bad constructor) named as a contract."""
    from mmapps.errors import MmappsError
    from mmapps.models.build import build_model

    try:
        return build_model(cfg, domain)
    except MmappsError:
        raise
    except Exception as err:
        steps.check_encoders(cfg, domain, None)  # raises the ContractError naming the part, when it is one
        field = "Domain.build_model" if domain.build_model is not None else "encoder"
        raise ContractError(domain.name, "model", f"building the model {raised(err)}. Contract: {steps._contract_text(field)}") from err
