"""The callable contracts of a domain plugin, and the checks of what each returns.

`CONTRACTS` is the one list of every callable a `mmapps.domain.Domain` names, with its signature
and types; docs/plugins.md prints it (a docs test keeps the two equal) and the self-test quotes
it in its messages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Contract:
    """One callable of the plugin API: where it is declared, its signature, and what it must do."""

    field: str
    signature: str
    notes: str


CONTRACTS: tuple[Contract, ...] = (
    Contract("Domain.build_datasets", "build_datasets(cfg: RunConfig) -> DatasetSplits", "train/val/test map-style datasets of `Sample`; `cfg.data.root` is the data (train, evaluate) or the folder to predict on (predict: unlabelled and split-less data included); `cfg.data.options` is a plain dict (validated by `data_options`, then dumped to JSON values)"),
    Contract("Domain.write_demo_data", "write_demo_data(out: Path, n: int, seed: int) -> Path", "writes `n` samples in the real file formats under `out`; returns the data root for `build_datasets`"),
    Contract("Domain.setup", "setup() -> None", "registers the domain's own encoders / fusions / heads (imports their modules); called once before a model is built"),
    Contract("Domain.build_model", "build_model(cfg: RunConfig, domain: Domain) -> nn.Module", "optional; the model's `forward(batch: Batch)` returns `dict[str, Tensor]` keyed by task name"),
    Contract("encoder", "Encoder(dim: int, **options) -> nn.Module; forward(mb: ModalityBatch) -> EncoderOutput", "`dim` is `model.dim`, `options` are `model.encoders.<m>.options`; sets `self.out_dim: int`; returns tokens (B, T, out_dim), token_mask (B, T) bool, pooled (B, out_dim), feature_map (B, C, H, W) or None; absent samples (`mb.present` False) hold zeros and must be masked in token_mask"),
    Contract("TaskSpec.losses", "loss(outputs: Tensor, targets: Tensor, batch: Batch) -> Tensor", "a scalar; or a class built once per run as `cls(cfg, train_set)` and then called the same way; NaN targets are ignored"),
    Contract("TaskSpec.postprocess", "postprocess(outputs: Tensor, batch: Batch) -> list[dict[str, Any]]", "one JSON-able dict per sample of the batch, in batch order; must not need targets (predict has none)"),
    Contract("TaskSpec.metrics", "metrics(records: list[PredictionRecord], cfg: RunConfig[, val_records: list[PredictionRecord] | None]) -> dict[str, float]", "keys as `<metric>` or `<metric>/<detail>`; a CI as `<metric>/ci_low` and `<metric>/ci_high` beside `<metric>`; `cfg.eval.bootstrap_resamples == 0` means no CI; must contain `primary_metric`"),
    Contract("TaskSpec.bootstrap_metric", "bootstrap_metric(records: list[PredictionRecord], cfg: RunConfig | None) -> Callable[[np.ndarray], float]", "optional; prepares arrays once and returns a function of row indices (repeats allowed) giving the primary metric of that resample, equal to `metrics(...)[primary_metric]` on the same records; used by resampling loops (the label-efficiency study's paired bootstrap); the self-test checks the equality on all rows"),
    Contract("Domain.write_predictions", "write_predictions(records: dict[str, list[PredictionRecord]], out_dir: Path[, labels: dict[str, list[str]]]) -> Path", "`records` is grouped by task name (iterating it yields task names); `record.target` is None on unlabelled data; returns the file (or folder) it wrote inside `out_dir`"),
    Contract("Domain.report_sections", "section(ctx: ReportContext) -> list[Section]", "each a `mmapps.report.Section(title, markdown, figures, data)`; figures are PNG files under `ctx.figures_dir`"),
    Contract("Domain.batch_sampler", "batch_sampler(dataset: Dataset, cfg: RunConfig, split: str) -> Sampler | None", "optional; yields lists of indices; None means the core sampler"),
    Contract("Domain.extra_commands", "extra_commands(app: typer.Typer) -> None", "adds domain verbs; imports heavy modules inside the commands"),
    Contract("Domain.export", "export(model: nn.Module, cfg: RunConfig, domain: Domain, example_batch: Batch) -> mmapps.export.adapter.ExportAdapter", "optional, for a domain with its own `build_model`: the graph module whose inputs are tensors only (every modality and its presence an input), the pre-step outside it and a `GraphRuntime` built from the sidecar alone (docs/deploy.md)"),
    Contract("Domain.pretrain", "pretrain(cfg: RunConfig, domain: Domain, model: nn.Module) -> mmapps.pretrain.contract.PretrainParts", "optional: the encoders, the fusion and one `ModalityObjective` per modality (masking unit, target, decoder) for a domain's own encoders; core modality kinds need no hook (docs/pretraining.md)"),
    Contract("Domain.serve", "serve: mmapps.serve.hooks.ServeHooks, or add_routes(api: fastapi.APIRouter, state: mmapps.serve.state.ServiceState) -> None", "optional: `ServeHooks(routes, socket_routes, decoder_imports, prepare_upload)`, or its short form `add_routes`; `routes` adds the domain's endpoints on its raw formats (`POST /v1/<name>/predict`) that write the upload as a data root (`mmapps.serve.request_roots.RequestRoot`) and answer through `mmapps.serve.pipeline.serve_root`; `socket_routes(state) -> APIRouter` adds routes that check their key themselves (WebSocket); `prepare_upload` (`\"module:function\"`, `(root, key_hex) -> identifiers`) de-identifies an upload in the decoder child before it is read (an upload that asks for it is refused by a domain without one); without a hook the domain is served by `/v1/<name>/predict-files` from its readers and prediction writer (docs/deploy.md)"),
    Contract("Domain.data_options", "data_options: type[pydantic.BaseModel]", "validates `cfg.data.options` when the config is resolved; the validated values reach `build_datasets` as a plain dict"),
)


def contract(field: str) -> Contract:
    return next(c for c in CONTRACTS if c.field == field)


def type_name(value: Any) -> str:
    """``Tensor(8, 3) float32``, ``numpy.float32``, ``list``, ``None``: what the self-test says it found."""
    if value is None:
        return "None"
    if isinstance(value, Tensor):
        return f"Tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    return type(value).__module__.replace("builtins", "").strip(".") + ("." if type(value).__module__ != "builtins" else "") + type(value).__qualname__


def check_encoder_output(out: Any, name: str, out_dim: int, batch_size: int) -> str | None:
    """Why `out` breaks the encoder contract, or None."""
    from mmapps.models.types import EncoderOutput

    expected = "EncoderOutput(tokens (B, T, D), token_mask (B, T) bool, pooled (B, D), feature_map or None) from mmapps.models.types"
    if not isinstance(out, EncoderOutput):
        return f"encoder {name!r}: forward returned {type_name(out)}, expected {expected}"
    tokens, mask, pooled = out.tokens, out.token_mask, out.pooled
    for field, value in (("tokens", tokens), ("token_mask", mask), ("pooled", pooled)):
        if not isinstance(value, Tensor):
            return f"encoder {name!r}: EncoderOutput.{field} is {type_name(value)}, expected a Tensor"
    if tokens.dim() != 3 or tokens.shape[0] != batch_size or tokens.shape[2] != out_dim:
        return f"encoder {name!r}: EncoderOutput.tokens has shape {tuple(tokens.shape)}, expected (B={batch_size}, T, out_dim={out_dim})"
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
        return f"encoder {name!r}: EncoderOutput.token_mask is {type_name(mask)}, expected bool of shape {tuple(tokens.shape[:2])} (B, T)"
    if tuple(pooled.shape) != (batch_size, out_dim):
        return f"encoder {name!r}: EncoderOutput.pooled has shape {tuple(pooled.shape)}, expected (B={batch_size}, out_dim={out_dim}); masked_mean(tokens, token_mask) from mmapps.models.pooling is the usual choice"
    if not bool(torch.isfinite(tokens.float()).all()) or not bool(torch.isfinite(pooled.float()).all()):
        return f"encoder {name!r}: EncoderOutput holds NaN or inf on the demo batch"
    return None


def check_out_dim(encoder: Any, name: str) -> str | None:
    value = getattr(encoder, "out_dim", None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        found = "no attribute out_dim" if not hasattr(encoder, "out_dim") else f"out_dim = {value!r} ({type_name(value)})"
        return f"encoder {name!r} ({type(encoder).__module__}.{type(encoder).__qualname__}): has {found}; an encoder sets self.out_dim: int, the width D of its tokens and pooled output (fusions are built from modality_to_dim)"
    return None


def check_model_outputs(outputs: Any, tasks: Sequence[str]) -> str | None:
    if not isinstance(outputs, Mapping):
        return f"model forward returned {type_name(outputs)}, expected dict[str, Tensor] keyed by task name {list(tasks)}"
    missing = [t for t in tasks if t not in outputs]
    if missing:
        return f"model forward returned keys {list(outputs)}, missing task(s) {missing}; expected one output per task"
    return None


def check_postprocess(predictions: Any, task: str, batch_size: int) -> str | None:
    where = f"postprocess of task {task!r}"
    if not isinstance(predictions, list):
        return f"{where}: returned {type_name(predictions)}, expected list[dict[str, Any]] (one JSON-able dict per sample)"
    if len(predictions) != batch_size:
        return f"{where}: returned {len(predictions)} predictions for a batch of {batch_size} samples; expected one per sample, in batch order"
    for i, p in enumerate(predictions):
        if not isinstance(p, dict):
            return f"{where}: prediction {i} is {type_name(p)}, expected dict[str, Any]"
        try:
            json.dumps(p, allow_nan=True)
        except TypeError as err:
            bad = next((k for k, v in p.items() if not _json_ok(v)), "?")
            return f"{where}: prediction[{bad!r}] is not JSON-able ({err}); convert tensors with .tolist() and numpy numbers with float()"
    return None


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def check_metric_keys(metrics: Any, task: str, primary: str) -> str | None:
    """The metric key conventions: dict[str, float]; CI bounds as `<metric>/ci_low|ci_high` beside `<metric>`; the primary metric present."""
    import difflib

    where = f"metrics of task {task!r}"
    if not isinstance(metrics, Mapping):
        return f"{where}: returned {type_name(metrics)}, expected dict[str, float]"
    for key, value in metrics.items():
        if not isinstance(key, str):
            return f"{where}: key {key!r} is {type_name(key)}, expected str"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{where}: value of {key!r} is {type_name(value)}, expected a Python float (use float(x); NaN for undefined)"
    for key in metrics:
        low = key.lower()
        for wrong, right in (("_ci_low", "/ci_low"), ("_ci_high", "/ci_high"), ("/low", "/ci_low"), ("/high", "/ci_high"), ("_lower", "/ci_low"), ("_upper", "/ci_high")):
            if low.endswith(wrong):
                return f"{where}: key {key!r} looks like a confidence bound; name it {key[: -len(wrong)] + right!r} (the convention `<metric>/ci_low`, `<metric>/ci_high` that the CLI and report show as [low, high])"
        for bound, other in (("/ci_low", "/ci_high"), ("/ci_high", "/ci_low")):
            if key.endswith(bound):
                base = key[: -len(bound)]
                if base not in metrics:
                    return f"{where}: {key!r} has no metric {base!r} beside it; a CI bound sits next to its estimate"
                if base + other not in metrics:
                    return f"{where}: {key!r} has no matching {base + other!r}"
    if primary not in metrics:
        close = difflib.get_close_matches(primary, [k for k in metrics if "/ci_" not in k], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        shown = [k for k in metrics if "/ci_" not in k][:12]
        return f"{where}: primary_metric {primary!r} is not among the keys{hint} Keys: {shown}"
    return None


def finite_or_nan(value: float) -> bool:
    return isinstance(value, (int, float)) and (math.isfinite(value) or math.isnan(value))


def contracts_markdown() -> str:
    """The contracts table of docs/plugins.md (a docs test keeps the page equal to it)."""
    rows = ["| declared in | signature | contract |", "|---|---|---|"]
    rows += [f"| `{c.field}` | `{c.signature}` | {c.notes} |" for c in CONTRACTS]
    return "\n".join(rows)


def error_types_markdown() -> str:
    """The table of exceptions the CLI prints as one paragraph, with their exit codes (from the code)."""
    import mmapps.errors as errors
    from mmapps.testing.errors import ContractError

    found = [obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, errors.MmappsError)] + [ContractError]
    rows = ["| raise | exit code | for |", "|---|---|---|"]
    for cls in sorted(found, key=lambda c: (c.exit_code, c.__name__ != "MmappsError", c.__name__)):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        rows.append(f"| `{cls.__module__}.{cls.__name__}` | {cls.exit_code} | {doc} |")
    rows.append("| `FileNotFoundError`, `PermissionError` | 2 | a file the user named is missing or unreadable (the message is printed as is) |")
    rows.append("| any other `OSError` | 8 | full disk, quota, read-only or failing device: printed with the file, the errno and the free space |")
    return "\n".join(rows)
