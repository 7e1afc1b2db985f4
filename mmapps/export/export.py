"""`export_checkpoint`: a trained checkpoint -> an export folder (ONNX, sidecar, model card, Triton repository).

The folder is assembled in a temporary sibling ``.<name>.<random>.tmp`` and renamed into place only
after the parity check passed and the sidecar was written: a failure leaves nothing half-written
(and an earlier export at the same path intact).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmapps.errors import CheckpointError, ConfigError
from mmapps.export.parity import ParityReport
from mmapps.export.sidecar import SIDECAR, Sidecar, write_sidecar

MIN_OPSET = 18
QUANTIZE = ("none", "dynamic", "static")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
PRECISIONS = ("fp32", "fp16")
EXTERNAL_DATA_BYTES = 1 << 30  # weights above 1 GiB go to model.onnx.data (protobuf's 2 GiB limit)


@dataclass
class ExportResult:
    """Where an export went and its parity figures."""

    folder: Path
    model: Path
    sidecar: Path
    parity: ParityReport
    seconds: float
    files: dict[str, int]
    extra: dict[str, Any] | None = None

    def variant_lines(self) -> list[str]:
        """One line per extra graph (int8, fp16/bf16) for the CLI."""
        extra, out = self.extra or {}, []
        q = extra.get("quantized")
        if q:
            v, goal = q["validation"], q.get("goal") or {}
            fmt = lambda x: "n/a" if x is None else f"{x:.4f}"
            met = {True: "met", False: "MISSED", None: "not checked"}[goal.get("met")]
            kept = q.get("sensitivity", {}).get("table", [])
            out.append(f"int8 ({q['model_file']}): {q['int8_mac_share']:.1%} of MACs in int8, {q['sizes']['ratio']:.2f}x smaller; {v['metric']} {fmt(v['fp32'])} -> {fmt(v['int8'])}, "
                       f"drop 95% CI upper bound {fmt(v['drop_ci_high'])} (goal {goal.get('max_drop_ci_high')}: {met}); fp32 groups kept by sensitivity: {sum(r['kept_fp32'] for r in kept)}")
        h = extra.get("half")
        if h:
            out.append(f"{h['precision']} ({h['model_file']}): {h['parity_line']}")
        return out


def max_opset() -> int:
    """The newest opset both the installed ``onnx`` and torch's exporter support."""
    import onnx

    top = int(onnx.defs.onnx_opset_version())
    try:
        from torch.onnx import _constants

        top = min(top, int(_constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):  # the constant moved: onnx's bound alone
        pass
    return top


def check_options(opset: int, quantize: str, calibration_method: str = "minmax", precision: str = "fp32") -> None:
    top = max_opset()
    if not MIN_OPSET <= opset <= top:
        raise ConfigError(f"--opset {opset}: not supported; mmapps exports opsets {MIN_OPSET} to {top} ({MIN_OPSET} is the oldest with the scatter and attention ops the models need, {top} the newest torch.onnx and the installed onnx support)")
    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"--calibration-method {calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)} (how static int8 sets activation ranges from the calibration samples)")
    if precision == "bf16":
        raise ConfigError("--precision bf16: not available: the fusion graph casts to float32 inside, so a bfloat16 trace mixes types, and onnxruntime's CPU provider has no bfloat16 Conv to check one; export --precision fp16, or build a bf16 TensorRT engine from model.onnx (trtexec --bf16)")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)} (fp16 adds a half-precision graph for GPUs beside the fp32 one)")


def export_checkpoint(
    checkpoint: Path,
    domain: Any,
    out: Path,
    opset: int = MIN_OPSET,
    quantize: str = "none",
    overrides: dict[str, Any] | None = None,
    calibration_samples: int = 64,
    triton_name: str | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    calibration_method: str = "minmax",
    int8_max_drop: float | None = None,
    precision: str = "fp32",
) -> ExportResult:
    """Export a ``.safetensors`` checkpoint of `domain` to the folder `out`.

    Args:
        checkpoint: an mmapps inference checkpoint (``<run>/checkpoints/best.safetensors``).
        domain: the domain asked to export it (another domain's checkpoint is refused).
        out: the export folder to create (an earlier export there is replaced only on success).
        opset: ONNX opset, ``MIN_OPSET`` .. `max_opset`.
        quantize: ``none``, ``dynamic`` or ``static`` (``mmapps.export.quantize``; static calibrates on
            `calibration_samples` training samples).
        overrides: nested config values over the checkpoint's (``data.root`` to use another copy of the data).
        triton_name: the Triton model name (default ``<domain>``).
        log: where progress lines go.
        calibration_method: static int8 activation ranges: ``minmax``, ``entropy`` or ``percentile``.
        int8_max_drop: the int8 accuracy goal (upper bound of the paired-bootstrap 95% CI of the
            validation primary-metric drop); above it the per-layer sensitivity search keeps the most
            sensitive op groups fp32. None: no search.
        precision: ``fp32``, or ``fp16`` to add ``model.fp16.onnx`` (a GPU graph with fp32 inputs and
            outputs; `mmapps.export.half`); ``bf16`` is refused with the reason.

    Raises:
        ConfigError: bad options; CheckpointError: a missing, corrupt or foreign checkpoint;
        DataError: no validation sample; ParityError: outputs beyond tolerance (nothing written).
    """
    import time

    start = time.perf_counter()
    check_options(opset, quantize, calibration_method, precision)
    checkpoint, out = Path(checkpoint), Path(out)
    if checkpoint.suffix == ".onnx" or checkpoint.is_dir():
        raise CheckpointError(f"--checkpoint {checkpoint}: export reads a .safetensors checkpoint written by train (e.g. <run>/checkpoints/best.safetensors), not an exported model")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SIDECAR).is_file())):
        raise ConfigError(f"--out {out}: exists and is not an mmapps export folder; give a new or empty folder (an earlier export there is replaced)")
    from mmapps.export.loading import load_for_export

    loaded = load_for_export(checkpoint, domain, overrides, ("train", "val") if quantize == "static" else ("val",))
    if quantize == "static" and (calibration_samples <= 0 or len(loaded.splits.train) == 0):
        raise ConfigError(
            f"--quantize static: no calibration data (--calibration-samples {calibration_samples}, {len(loaded.splits.train)} training samples under data root "
            f"{loaded.cfg.data.root}); static int8 calibrates activation ranges on training samples: give --data with a training split and --calibration-samples > 0, or use --quantize dynamic"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        options = {"calibration_method": calibration_method, "int8_max_drop": int8_max_drop, "precision": precision}
        sidecar, parity = _export_into(tmp, loaded, opset, quantize, calibration_samples, triton_name or loaded.domain.name, log, options)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return ExportResult(out, out / sidecar.model_file, out / SIDECAR, parity, time.perf_counter() - start, files, dict(sidecar.extra))


def export_graph(adapter: Any, example: Any, folder: Path, opset: int, domain: Any, config_yaml: str) -> Sidecar:
    """The low-level step: write the adapter's pre-processing files and ``model.onnx`` into `folder`.

    Returns the draft `Sidecar` (no thresholds, distributions or parity yet, artifacts not hashed):
    ``OnnxModel(draft, folder)`` runs it; `write_sidecar` finishes the folder.
    """
    from mmapps.domain import resolve
    from mmapps.export.onnx_write import write_onnx

    preprocess = adapter.preprocess(folder)
    runtime = resolve(adapter.runtime)(preprocess, folder)
    write_onnx(adapter, runtime.feeds(example), Path(folder) / "model.onnx", opset)
    return Sidecar(
        domain=domain.name, inputs=list(adapter.inputs), outputs=list(adapter.outputs), runtime=adapter.runtime, preprocess=preprocess,
        labels={t.name: list(t.labels) for t in domain.tasks}, thresholds={}, score_distribution={}, parity={},
        config=config_yaml, mmapps_version=_version(), opset=opset,
    )


def _export_into(folder: Path, loaded: Any, opset: int, quantize: str, calibration_samples: int, triton_name: str, log: Callable[[str], None], options: dict[str, Any]) -> tuple[Sidecar, ParityReport]:
    from mmapps.export.card import write_model_card
    from mmapps.export.session import OnnxModel
    from mmapps.export.triton import write_triton_repository
    from mmapps.export.validation import validation_summary

    log(f"exporting {loaded.domain.name} ({type(loaded.model).__name__}) to ONNX opset {opset} with torch.onnx.export(dynamo=True)...")
    draft = export_graph(loaded.adapter, loaded.example, folder, opset, loaded.domain, loaded.config_yaml)
    onnx_model = OnnxModel(draft, folder)
    log(f"parity: onnxruntime vs PyTorch on the validation split ({len(loaded.splits.val)} samples)...")
    summary = validation_summary(loaded, onnx_model)
    summary.parity.raise_if_failed()
    draft.thresholds, draft.score_distribution, draft.parity = summary.thresholds, summary.distributions, summary.parity.to_json()
    draft.extra["validation_metrics"] = summary.metrics_torch
    draft.extra["test_metrics"] = loaded.test_metrics
    from mmapps.serve.input_profile import split_input_distribution

    draft.extra["input_distribution"] = split_input_distribution(loaded.splits.val, loaded.cfg, loaded.domain)  # the served model's input-drift references
    if quantize != "none":
        from mmapps.export.quantize_call import quantize_export

        draft.extra["quantized"] = quantize_export(folder, draft, loaded, quantize, calibration_samples, log, options["calibration_method"], options["int8_max_drop"])
    if options["precision"] != "fp32":
        from mmapps.export.half import export_half

        draft.extra["half"] = export_half(folder, draft, loaded, options["precision"], log)
    write_triton_repository(folder, triton_name, draft)
    write_model_card(folder, draft, loaded, summary)
    write_sidecar(folder, draft)
    return draft, summary.parity


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an earlier export at `out` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old.{os.getpid()}.tmp"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmapps")
    except PackageNotFoundError:
        return "unknown"
