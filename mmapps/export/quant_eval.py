"""An int8 candidate graph against the fp32 graph on one split: metric of both, paired drop, max |Δ|, flips.

`SplitProbe` runs the fp32 graph over the split once and keeps its feeds, outputs and prediction
records, so each candidate of the sensitivity search (`mmapps.export.sensitivity`) costs one pass
of the candidate alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SplitProbe:
    """The fp32 graph's pass over `split`: per batch the feeds, the graph outputs and the batch itself."""

    loaded: Any
    fp32: Any
    split: str
    batches: list[tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]] = field(default_factory=list)
    records: dict[str, list] = field(default_factory=dict)

    @classmethod
    def run(cls, loaded: Any, fp32: Any, split: str) -> SplitProbe:
        from mmapps.export.validation import _records

        probe = cls(loaded, fp32, split)
        for batch in loaded.loader(split):
            feeds = fp32.runtime.feeds(batch)
            outputs = fp32.run(feeds)
            probe.batches.append((batch, feeds, outputs))
            _records(loaded.domain, fp32.runtime.model_outputs(outputs, batch), batch, probe.records)
        return probe

    def feeds(self, limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """The split's feeds, the first batches holding at least `limit` samples (all without a limit)."""
        out, seen = [], 0
        for batch, feeds, _ in self.batches:
            if limit is not None and seen >= limit:
                break
            out.append(feeds)
            seen += len(batch)
        return out

    def output_error(self, session: Any, limit: int | None = None) -> float:
        """Mean over the float outputs of ||Δ||₂ / ||fp32||₂ on the first `limit` samples (the sensitivity score)."""
        errors: dict[str, list[float]] = {}
        seen = 0
        for batch, feeds, ref in self.batches:
            if limit is not None and seen >= limit:
                break
            seen += len(batch)
            got = dict(zip(ref, session.run(list(ref), feeds)))
            for name, value in ref.items():
                if np.issubdtype(value.dtype, np.floating) and value.size:
                    a, b = value.astype(np.float64), got[name].astype(np.float64)
                    errors.setdefault(name, []).extend([float(np.sum((a - b) ** 2)), float(np.sum(a**2))])
        ratios = [np.sqrt(sum(v[0::2]) / max(sum(v[1::2]), 1e-30)) for v in errors.values()]
        return float(np.mean(ratios)) if ratios else 0.0

    def compare(self, candidate: Any, resamples: int = 200) -> dict[str, Any]:
        """`candidate` (an `OnnxModel`) against the fp32 pass: metric of both with the paired drop and its CI,
        max |Δ| of the outputs, decisions flipped at the sidecar's thresholds."""
        from mmapps.export.drop import paired_drop
        from mmapps.export.scores import decisions, record_scores
        from mmapps.export.validation import _records

        domain = self.loaded.domain
        records: dict[str, list] = {}
        diff = 0.0
        for batch, feeds, ref in self.batches:
            got = candidate.run(feeds)
            for name, value in ref.items():
                if np.issubdtype(value.dtype, np.floating) and value.size:
                    diff = max(diff, float(np.max(np.abs(value.astype(np.float64) - got[name].astype(np.float64)))))
            _records(domain, candidate.runtime.model_outputs(got, batch), batch, records)
        drop = paired_drop(domain, self.loaded.cfg, self.records, records, resamples)
        flipped = 0
        thresholds = getattr(self.fp32.sidecar, "thresholds", {}) or {}
        for task in domain.tasks:
            if task.name in thresholds:
                ref_d = decisions(task, record_scores(self.records.get(task.name, [])), thresholds[task.name])
                got_d = decisions(task, record_scores(records.get(task.name, [])), thresholds[task.name])
                if ref_d is not None and got_d is not None:
                    flipped += int((ref_d != got_d).sum())
        return {
            "split": self.split, "metric": drop["metric"], "fp32": _finite(drop["reference"]), "int8": _finite(drop["value"]),
            "drop": _finite(drop["drop"]), "drop_ci_low": _finite(drop["drop_ci_low"]), "drop_ci_high": _finite(drop["drop_ci_high"]),
            "max_abs_diff": diff, "flipped_decisions": flipped,
        }


def open_candidate(sidecar: Any, folder: Path, model_file: str) -> Any:
    from mmapps.export.session import OnnxModel

    return OnnxModel(sidecar, folder, model_file)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float, np.floating)) and np.isfinite(value) else None
