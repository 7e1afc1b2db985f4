"""The self-test steps on a few real samples: datasets, batch, parts, model, outputs, metrics, writers.

Each step calls one plugin callable and turns a broken contract into a `ContractError` naming the
field, what was found and what is expected. `mmapps.testing.check_domain` runs them all;
`preflight` (called by ``train`` before the first epoch) runs the cheap ones.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from mmapps.data.sample import Batch, Sample, collate_samples
from mmapps.domain import Domain, resolve
from mmapps.errors import MmappsError
from mmapps.testing.contracts import check_encoder_output, check_metric_keys, check_model_outputs, check_out_dim, check_postprocess, contract, type_name
from mmapps.testing.errors import ContractError, raised

MAX_SAMPLES = 8


def call(domain: Domain, step: str, field: str, fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """Call a plugin callable; an exception (other than a user-facing MmappsError) becomes a ContractError quoting the contract."""
    try:
        return fn(*args, **kwargs)
    except ContractError:
        raise
    except MmappsError:  # the plugin's own clean error (bad data, bad option): it already reads well
        raise
    except Exception as err:
        text, extra = str(err), ""
        if isinstance(err, AttributeError) and "'dict' object has no attribute" in text:
            extra = " cfg.data.options is a plain dict (validated by Domain.data_options, then dumped to JSON values): read cfg.data.options['name'], or validate_options(YourOptions, cfg.data.options, 'data.options') from mmapps.config for a typed object."
        elif isinstance(err, AttributeError) and "'str' object has no attribute" in text and field == "Domain.write_predictions":
            extra = " records is a dict grouped by task name, so iterating it yields task names: loop over records.items() (task, list[PredictionRecord])."
        raise ContractError(domain.name, step, f"{field}{hint} {raised(err)}.{extra} Contract: {_contract_text(field)}") from err


def _contract_text(field: str) -> str:
    try:
        c = contract(field)
    except StopIteration:
        return "see docs/plugins.md"
    return f"{c.signature}; {c.notes}"


def fail(domain: Domain, step: str, problem: str | None, field: str | None = None) -> None:
    if problem is not None:
        raise ContractError(domain.name, step, problem + (f". Contract: {_contract_text(field)}" if field else ""))


def build_splits(cfg: Any, domain: Domain) -> Any:
    from mmapps.data.splits import DatasetSplits

    splits = call(domain, "datasets", "Domain.build_datasets", resolve(domain.build_datasets), cfg)
    fail(domain, "datasets", None if isinstance(splits, DatasetSplits) else f"build_datasets returned {type_name(splits)}, expected mmapps.data.DatasetSplits(train, val, test, issues, split_of_group, info)", "Domain.build_datasets")
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        if not (hasattr(split, "__len__") and hasattr(split, "__getitem__")):
            fail(domain, "datasets", f"DatasetSplits.{name} is {type_name(split)}, expected a map-style Dataset (__len__, __getitem__) of Sample", "Domain.build_datasets")
    return splits


def pick_samples(domain: Domain, dataset: Any, split: str, n: int = MAX_SAMPLES) -> list[Sample]:
    """The first `n` items of a split, each checked against the `Sample` contract."""
    modalities = set(domain.modality_names)
    tasks = {t.name for t in domain.tasks}
    samples = []
    for index in range(min(n, len(dataset))):
        item = call(domain, "samples", "Domain.build_datasets", dataset.__getitem__, index, hint=f" ({split}[{index}])")
        where = f"{split}[{index}]"
        if not isinstance(item, Sample):
            fail(domain, "samples", f"{where} is {type_name(item)}, expected mmapps.data.Sample(sample_id: str, group_id: str, inputs: dict[str, Any], targets: dict[str, Any], meta: dict)")
        for field in ("sample_id", "group_id"):
            if not isinstance(getattr(item, field), str):
                fail(domain, "samples", f"{where}.{field} is {type_name(getattr(item, field))}, expected str")
        if not isinstance(item.inputs, dict) or not set(item.inputs) <= modalities:
            fail(domain, "samples", f"{where}.inputs has keys {sorted(item.inputs) if isinstance(item.inputs, dict) else type_name(item.inputs)}, expected a dict keyed by the domain's modalities {sorted(modalities)} (None for an absent one)")
        if not isinstance(item.targets, dict):
            fail(domain, "samples", f"{where}.targets is {type_name(item.targets)}, expected a dict keyed by task names {sorted(tasks)} (empty for unlabelled data)")
        for name in modalities & set(item.inputs):
            value, layout = item.inputs[name], domain.modality(name).layout
            ok = value is None or (isinstance(value, (str, list)) if layout == "text" else hasattr(value, "shape"))
            if not ok:
                fail(domain, "samples", f"{where}.inputs[{name!r}] is {type_name(value)}; layout {layout!r} expects {'str or list[str]' if layout == 'text' else 'a Tensor or numpy array'} (None when absent)")
        samples.append(item)
    return samples


def collate(domain: Domain, samples: Sequence[Sample], modalities: Sequence[str]) -> Batch:
    layouts = {m: domain.modality(m).layout for m in modalities}
    return call(domain, "batch", "Domain.build_datasets", collate_samples, list(samples), layouts, hint=" (collate_samples: values of one modality must batch under its layout; see mmapps.data.sample)")


def check_encoders(cfg: Any, domain: Domain, batch: Batch | None, model: nn.Module | None = None) -> None:
    """Check every configured encoder (the model's own, else constructed as the core does) and run it on the batch.

    Only for the core encoders -> fusion -> heads model (a domain's own ``build_model`` is checked by its outputs).
    """
    from mmapps.models.build import register_core_parts, selected_modalities
    from mmapps.registry import ENCODERS

    register_core_parts()
    if domain.setup is not None:
        call(domain, "encoders", "Domain.setup", resolve(domain.setup))
    if domain.build_model is not None:
        return
    built = getattr(model, "encoders", None)
    for m in selected_modalities(cfg, domain):
        spec = cfg.model.encoders.get(m)
        if spec is None:
            continue
        if isinstance(built, nn.ModuleDict) and m in built:
            encoder = built[m]
        else:
            cls = ENCODERS.get(spec.name)
            encoder = call(domain, "encoders", "encoder", cls, dim=cfg.model.dim, **spec.options, hint=f" (model.encoders.{m}: {spec.name} with dim={cfg.model.dim} and options {dict(spec.options)})")
        fail(domain, "encoders", check_out_dim(encoder, spec.name), "encoder")
        if batch is None or m not in batch.inputs or batch.inputs[m].data is None:
            continue
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                out = call(domain, "encoders", "encoder", encoder, batch.inputs[m], hint=f" (forward of {spec.name!r} on modality {m!r})")
        finally:
            encoder.train(was_training)
        fail(domain, "encoders", check_encoder_output(out, spec.name, encoder.out_dim, len(batch)), "encoder")


def run_model(domain: Domain, cfg: Any, model: nn.Module, batch: Batch, runtime: Any) -> dict[str, Any]:
    """Forward one batch in eval mode; a failure inside the core model is traced back to the encoder that caused it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), runtime.autocast():
            try:
                outputs = model(batch.to(runtime.device))
            except Exception:
                if domain.build_model is None:  # find the part that broke its contract
                    check_encoders(cfg, domain, batch, model)
                raise
    except ContractError:
        raise
    except Exception as err:
        raise ContractError(domain.name, "model", f"model forward {raised(err)}. Contract: {_contract_text('Domain.build_model' if domain.build_model else 'encoder')}") from err
    finally:
        model.train(was_training)
    fail(domain, "model", check_model_outputs(outputs, [t.name for t in domain.tasks]), "Domain.build_model")
    return outputs


def make_records(domain: Domain, outputs: dict[str, Any], batch: Batch, labelled: bool = True) -> dict[str, list[Any]]:
    """Prediction records of one batch, exactly as `mmapps.evaluation.predict_records` makes them."""
    from mmapps.evaluation.records import PredictionRecord, _to_plain

    records: dict[str, list[Any]] = {}
    for task in domain.tasks:
        predictions = call(domain, "postprocess", "TaskSpec.postprocess", resolve(task.postprocess), outputs[task.name], batch, hint=f" (task {task.name!r})")
        fail(domain, "postprocess", check_postprocess(predictions, task.name, len(batch)), "TaskSpec.postprocess")
        targets = batch.targets.get(task.name) if labelled else None
        records[task.name] = sorted(
            (PredictionRecord(batch.sample_ids[i], batch.group_ids[i], task.name, p, _to_plain(targets[i]) if targets is not None else None, batch.meta[i]) for i, p in enumerate(predictions)),
            key=lambda r: r.sample_id,
        )
    return records


def check_metrics(domain: Domain, cfg: Any, records: dict[str, list[Any]]) -> dict[str, float]:
    from mmapps.evaluation.records import PredictionRecord  # noqa: F401  (the records' type)

    out: dict[str, float] = {}
    for task in domain.tasks:
        fn = resolve(task.metrics)
        kwargs = {"val_records": records[task.name]} if "val_records" in inspect.signature(fn).parameters else {}
        values = call(domain, "metrics", "TaskSpec.metrics", fn, records[task.name], cfg, hint=f" (task {task.name!r}, {len(records[task.name])} records, bootstrap_resamples={cfg.eval.bootstrap_resamples})", **kwargs)
        fail(domain, "metrics", check_metric_keys(values, task.name, task.primary_metric), "TaskSpec.metrics")
        if task.bootstrap_metric is not None:
            check_bootstrap_metric(domain, task, records[task.name], values[task.primary_metric], cfg)
        out.update({f"{task.name}/{k}" if len(domain.tasks) > 1 else k: v for k, v in values.items()})
    return out


def check_bootstrap_metric(domain: Domain, task: Any, records: list[Any], expected: float, cfg: Any = None) -> None:
    """``TaskSpec.bootstrap_metric`` on all rows must equal ``metrics``' primary value on the same records."""
    import math

    import numpy as np

    prepared = call(domain, "metrics", "TaskSpec.bootstrap_metric", resolve(task.bootstrap_metric), records, cfg, hint=f" (task {task.name!r})")
    value = call(domain, "metrics", "TaskSpec.bootstrap_metric", prepared, np.arange(len(records)), hint=" (the function it returned, on every row)")
    v, e = float(value), float(expected)
    if not ((math.isnan(v) and math.isnan(e)) or abs(v - e) <= 1e-9):
        fail(domain, "metrics", f"bootstrap_metric gives {value!r} on all {len(records)} records, but metrics gives {task.primary_metric}={expected!r}; "
             "the prepared metric must compute the primary metric exactly", "TaskSpec.bootstrap_metric")


def check_write_predictions(domain: Domain, records: dict[str, list[Any]], out_dir: Path, step: str = "write_predictions") -> Path:
    from mmapps.workflows.run import write_predictions

    out_dir.mkdir(parents=True, exist_ok=True)
    hint = " (on unlabelled records, as predict meets them on data without labels: record.target is None)" if step == "unlabelled" else ""
    path = call(domain, step, "Domain.write_predictions", write_predictions, domain, records, out_dir, hint=hint)
    if not isinstance(path, (str, Path)):
        fail(domain, step, f"write_predictions returned {type_name(path)}, expected the Path of the file (or folder) it wrote", "Domain.write_predictions")
    if not Path(path).exists():
        fail(domain, step, f"write_predictions returned {path}, which does not exist; return the Path it wrote inside out_dir", "Domain.write_predictions")
    return Path(path)


def unlabelled(samples: Sequence[Sample]) -> list[Sample]:
    """The samples as ``predict`` may meet them in unlabelled data: no targets."""
    return [Sample(s.sample_id, s.group_id, s.inputs, {}, s.meta) for s in samples]


@contextlib.contextmanager
def rng_preserved(device: torch.device | None = None) -> Iterator[None]:
    """Leave every RNG (torch CPU/CUDA, numpy, random) as it was: the self-test must not change a run."""
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

