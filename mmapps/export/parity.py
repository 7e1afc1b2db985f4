"""Exported vs PyTorch on the validation split: max |Δ|, tolerance, flipped decisions, primary metric of both.

Tolerance per element (fp32): ``|onnx - torch| <= atol + rtol * |torch|`` with ``atol = 1e-4`` and
``rtol = 1e-3``, on the graph's raw outputs (logits). Decisions are compared at the thresholds chosen
on validation (`mmapps.export.scores`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mmapps.errors import MmappsError

ATOL, RTOL = 1e-4, 1e-3


class ParityError(MmappsError):
    """The exported graph's outputs differ from PyTorch's beyond the tolerance."""

    exit_code = 9


@dataclass
class OutputParity:
    """One graph output over a split."""

    name: str
    max_abs_diff: float = 0.0
    max_ref: float = 0.0
    violations: int = 0
    elements: int = 0
    flipped: int = 0
    decisions: int = 0
    worst_position: int | None = None  # the sample's position in the split, never its id (ids can identify patients)
    seen: int = 0
    flip_margin: float | None = None

    def add(self, got: np.ndarray, ref: np.ndarray, sample_ids: list[str], atol: float, rtol: float) -> None:
        if got.shape != ref.shape:
            raise ParityError(f"parity: output {self.name!r} has shape {got.shape} on onnxruntime and {ref.shape} in PyTorch (split positions {self.seen}-{self.seen + len(sample_ids) - 1})")
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        diff = np.where(np.isnan(got) & np.isnan(ref), 0.0, np.nan_to_num(diff, nan=np.inf))
        bad = diff > atol + rtol * np.abs(ref)
        self.violations += int(bad.sum())
        self.elements += int(diff.size)
        if diff.size and float(diff.max()) > self.max_abs_diff:
            self.max_abs_diff = float(diff.max())
            self.worst_position = self.seen + int(np.unravel_index(diff.argmax(), diff.shape)[0]) if diff.ndim else None
        self.seen += len(sample_ids)
        self.max_ref = max(self.max_ref, float(np.abs(ref).max()) if ref.size else 0.0)


@dataclass
class ParityReport:
    """Parity figures of one export (written into the sidecar and printed by the CLI)."""

    split: str
    samples: int
    atol: float
    rtol: float
    outputs: dict[str, OutputParity] = field(default_factory=dict)
    metric: str = ""
    metric_torch: float | None = None
    metric_onnx: float | None = None

    @property
    def ok(self) -> bool:
        return all(o.violations == 0 for o in self.outputs.values())

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs.values()), default=0.0)

    @property
    def flipped(self) -> int:
        return sum(o.flipped for o in self.outputs.values())

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(ok=self.ok, max_abs_diff=self.max_abs_diff, flipped=self.flipped)
        return values

    def lines(self) -> list[str]:
        out = [f"parity on {self.split} ({self.samples} samples, tolerance |d| <= {self.atol:g} + {self.rtol:g}*|ref|):"]
        for o in self.outputs.values():
            margin = f" (each within {o.flip_margin:.2g} of its threshold)" if o.flip_margin is not None else ""
            out.append(f"  {o.name}: max |d| {o.max_abs_diff:.3g} (max |ref| {o.max_ref:.3g}), {o.violations} of {o.elements} values out of tolerance, {o.flipped} of {o.decisions} decisions flipped{margin}")
        if self.metric:
            fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
            out.append(f"  {self.metric}: PyTorch {fmt(self.metric_torch)}, onnxruntime {fmt(self.metric_onnx)}")
        return out

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        failing = [o for o in self.outputs.values() if o.violations]
        named = "; ".join(f"{o.name}: {o.violations} of {o.elements} values, max |d| {o.max_abs_diff:.3g} (worst at split position {o.worst_position})" for o in failing)
        raise ParityError(
            f"parity failed: the exported graph differs from PyTorch beyond |d| <= {self.atol:g} + {self.rtol:g}*|ref| on the {self.split} split "
            f"({named}); nothing was written. Re-run with --debug to keep the traceback, or report the model configuration"
        )


def compare_batches(pairs: Iterable[tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]], split: str, atol: float = ATOL, rtol: float = RTOL) -> ParityReport:
    """Accumulate parity over (onnx outputs, torch outputs, sample ids) per batch."""
    report = ParityReport(split, 0, atol, rtol)
    for got, ref, ids in pairs:
        report.samples += len(ids)
        for name, value in ref.items():
            report.outputs.setdefault(name, OutputParity(name)).add(got[name], value, ids, atol, rtol)
    return report
