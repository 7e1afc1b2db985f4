"""Model complexity: parameters per part, MACs per sample, peak memory and throughput; the report's section.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on real batches, which counts
FLOPs of matrix products and convolutions (attention included) as 2 x MACs; element-wise work
(activations, norms, softmax) is not counted, as in every published MAC figure. A frozen text
encoder is counted with its output cache off, so the figure is what a fresh text costs.

Parts are the model's encoders (one per modality), its fusion and its heads for the core
`FusionModel`; for a domain's own model (e.g. the driving detector) they are its top-level children.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmapps.report.model import ReportContext, Section, markdown_table


@dataclass
class ParameterCount:
    """Parameters of one part of a model."""

    part: str
    total: int
    trainable: int


@dataclass
class MacCount:
    """Multiply-accumulates of one forward pass.

    Attributes:
        total: MACs of the whole batch.
        per_sample: ``total / batch_size``.
        per_part: part name -> MACs per sample.
        batch_size: samples in the counted batch.
    """

    total: int
    per_sample: float
    per_part: dict[str, float]
    batch_size: int


def core_model(model: nn.Module) -> nn.Module:
    """The innermost model holding ``encoders``/``fusion``/``heads`` (domain wrappers such as
    surveillance's window alignment hold it as a child), else `model` itself."""
    for module in model.modules():
        if all(hasattr(module, name) for name in ("encoders", "fusion", "heads")):
            return module
    return model


def model_parts(model: nn.Module) -> dict[str, nn.Module]:
    """Part name (a dotted path in `model`) -> module: ``encoders.<m>``, ``fusion``, ``heads`` (or top-level children)."""
    core = core_model(model)
    prefix = next((name for name, module in model.named_modules() if module is core), "")
    dot = f"{prefix}." if prefix else ""
    if isinstance(getattr(core, "encoders", None), nn.ModuleDict):
        parts = {f"{dot}encoders.{m}": enc for m, enc in sorted(core.encoders.items())}
        parts[f"{dot}fusion"] = core.fusion
        parts[f"{dot}heads"] = core.heads
        return parts
    return {name: child for name, child in model.named_children()}


def count_parameters(model: nn.Module) -> list[ParameterCount]:
    """Parameters per part, then a ``total`` row (shared parameters counted once)."""
    rows = []
    for part, module in model_parts(model).items():
        params = list(module.parameters())
        rows.append(ParameterCount(part, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)))
    every = list(model.parameters())
    rows.append(ParameterCount("total", sum(p.numel() for p in every), sum(p.numel() for p in every if p.requires_grad)))
    return rows


@contextlib.contextmanager
def text_cache_off(model: nn.Module) -> Iterator[None]:
    """Run frozen text encoders without their output cache (so their MACs are counted and timed)."""
    saved = [(m, m._cache_size) for m in model.modules() if hasattr(m, "_cache_size") and hasattr(m, "_cache")]
    for module, _ in saved:
        module._cache_size = 0
    try:
        yield
    finally:
        for module, size in saved:
            module._cache_size = size


def count_macs(model: nn.Module, batch: Any, forward: Callable[[nn.Module, Any], Any] | None = None) -> MacCount:
    """MACs of one inference forward pass of `model` on `batch` (``FlopCounterMode`` FLOPs / 2).

    Args:
        model: any module; evaluated in eval mode under ``torch.no_grad`` (its mode is restored).
        batch: the input (a `Batch`, or a tensor for plain modules).
        forward: how to call the model (default ``model(batch)``).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    root = type(model).__name__
    try:
        with torch.no_grad(), text_cache_off(model), FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
            (forward or (lambda m, b: m(b)))(model, batch)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    size = batch_size_of(batch)
    per_part = {part: _part_flops(counts, f"{root}.{part}") / 2 / size for part in model_parts(model)}
    total = counter.get_total_flops() // 2
    return MacCount(int(total), total / size, per_part, size)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the CPU attention kernels ``torch.utils.flop_counter`` does not know (it would count them as 0)."""
    from torch.utils.flop_counter import sdpa_flop_count

    aten = torch.ops.aten

    def cpu_flash(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def native_mha(query_shape, key_shape, value_shape, embed_dim, num_heads, *args, **kwargs) -> int:
        # nn.MultiheadAttention's inference fast path: input projections, Q·Kᵀ, probabilities·V, output projection
        b, tq, e = query_shape if len(query_shape) == 3 else (1, *query_shape)
        tk = key_shape[-2]
        return 2 * b * (tq * e * e + 2 * tk * e * e) + 4 * b * tq * tk * e + 2 * b * tq * e * e

    formulas: dict[Any, Callable[..., int]] = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", cpu_flash), ("_native_multi_head_attention", native_mha)):
        if hasattr(aten, name):
            formulas[getattr(aten, name)] = fn
    return formulas


def _part_flops(counts: dict[str, dict[Any, int]], name: str) -> int:
    """FLOPs of module `name`; a container never called itself (a ModuleDict of heads) sums its outermost called children."""
    if name in counts:
        return sum(counts[name].values())
    inside = [key for key in counts if key.startswith(name + ".")]
    outermost = [key for key in inside if not any(key.startswith(other + ".") for other in inside if other != key)]
    return sum(sum(counts[key].values()) for key in outermost)


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    return len(batch)


def first_batch(dataset: Any, cfg: Any, domain: Any, size: int) -> Any:
    """Collate the first `size` samples of `dataset` with the domain's layouts (None when it is empty)."""
    from mmapps.data.sample import collate_samples
    from mmapps.models.build import selected_modalities

    n = min(size, len(dataset))
    if n == 0:
        return None
    modalities = selected_modalities(cfg, domain)
    return collate_samples([dataset[i] for i in range(n)], {m: domain.modality(m).layout for m in modalities})


def proc_status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM...) in KiB; None where there is no procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def process_peak_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA max allocated, else the resident high-water mark."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    hwm = proc_status_kb("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


@dataclass
class InferenceSpeed:
    """Measured inference throughput and peak memory (growth over the model already loaded on CPU)."""

    samples_per_s: float
    peak_mb: float
    batches: int
    batch_size: int


def measure_inference(model: nn.Module, batches: Sequence[Any], device: torch.device, repeats: int = 3) -> InferenceSpeed:
    """Time `repeats` passes over `batches` (after one warm-up pass) in eval mode under no_grad.

    CPU peak memory is the growth of the resident high-water mark over its value at the start
    (Linux resets the mark with ``clear_refs`` 5; elsewhere the process peak is reported).
    """
    was_training = model.training
    model.eval()
    moved = [b.to(device) if hasattr(b, "to") else b for b in batches]
    base_kb = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            base_kb = proc_status_kb("VmRSS")
        except OSError:
            base_kb = None
    try:
        with torch.no_grad():
            for b in moved:
                model(b)
            started = time.perf_counter()
            for _ in range(repeats):
                for b in moved:
                    model(b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - started
    finally:
        model.train(was_training)
    samples = repeats * sum(batch_size_of(b) for b in moved)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        hwm = proc_status_kb("VmHWM")
        peak = (hwm - base_kb) / 1024 if hwm is not None and base_kb is not None else process_peak_mb(device)
    return InferenceSpeed(samples / max(seconds, 1e-9), peak, len(moved), batch_size_of(moved[0]))


def training_speed(history: Sequence[dict[str, Any]], train_samples: int | None) -> float | None:
    """Training samples/s over the run's epochs (epoch wall time, validation included)."""
    seconds = sum(float(row.get("seconds", 0.0)) for row in history)
    if not history or not train_samples or seconds <= 0:
        return None
    return train_samples * len(history) / seconds


def complexity_section(ctx: ReportContext) -> list[Section]:
    """Parameters per part, MACs per sample, peak memory and samples/s in training and inference."""
    model = getattr(ctx.model, "module", ctx.model)  # DistributedDataParallel holds the model as .module
    if not isinstance(model, nn.Module):  # no model, or an exported graph (onnxruntime) under evaluate
        return []
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    train_peak = process_peak_mb(device)  # before inference is measured: the peak of training (or loading)
    params = count_parameters(model)
    batch = first_batch(ctx.test_dataset, ctx.cfg, ctx.domain, ctx.cfg.train.batch_size) if ctx.test_dataset is not None else None
    batch = batch.to(device) if batch is not None else None
    macs = speed = None
    problem = ""
    try:
        macs = count_macs(model, batch) if batch is not None else None
        speed = measure_inference(model, [batch], device) if batch is not None else None
    except Exception as err:  # a model the counter cannot run on one batch must not cost the run its report
        problem = f" MACs and inference speed could not be measured ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})."
    train_rate = training_speed(ctx.history, ctx.info.get("train samples"))
    rows = [[p.part, f"{p.total:,}", f"{p.trainable:,}", _macs_text(macs.per_part.get(p.part)) if macs else "n/a"] for p in params]
    if macs:
        rows[-1][3] = _macs_text(macs.per_sample)
    body = markdown_table(["part", "parameters", "trainable", "MACs / sample"], rows)
    facts = [
        ["MACs per sample", _macs_text(macs.per_sample) if macs else "n/a"],
        ["FLOPs per sample (2 x MACs)", _macs_text(2 * macs.per_sample) if macs else "n/a"],
        ["training samples/s (epoch wall time, validation included)", f"{train_rate:.1f}" if train_rate else "n/a (no training in this run)"],
        [f"peak memory before inference (MB, {'CUDA max allocated' if device.type == 'cuda' else 'process high-water mark'}: training, or loading)", f"{train_peak:.0f}"],
        [f"inference samples/s (batch {speed.batch_size}, {device.type})" if speed else "inference samples/s", f"{speed.samples_per_s:.1f}" if speed else "n/a"],
        ["inference peak memory (MB, growth over the loaded model)", f"{speed.peak_mb:.0f}" if speed else "n/a"],
    ]
    body += "\n\n" + markdown_table(["", ""], facts)
    body += "\n\nMACs counted by `torch.utils.flop_counter` on the first test batch (matrix products and convolutions, attention included; the frozen text encoder without its cache)." + problem
    data = {
        "parameters": {p.part: {"total": p.total, "trainable": p.trainable} for p in params},
        "macs_per_sample": macs.per_sample if macs else None,
        "macs_per_part": macs.per_part if macs else {},
        "train_samples_per_s": train_rate,
        "train_peak_mb": train_peak,
        "inference_samples_per_s": speed.samples_per_s if speed else None,
        "inference_peak_mb": speed.peak_mb if speed else None,
        "inference_batch_size": speed.batch_size if speed else None,
    }
    return [Section("Complexity", body, data=data)]


def _macs_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"
