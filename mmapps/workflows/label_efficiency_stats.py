"""Statistics of the label-efficiency study: paired bootstrap CIs over test groups, per-group AUROC, peak memory.

Paired: both arms are scored on the same resample of test groups (patients, clips, frames), and
the statistic is the mean over seeds of (pretrained - scratch) on that resample, so the interval
reflects test-set sampling and the seeds together, and the shared difficulty of a resample cancels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmapps.evaluation.records import PredictionRecord
from mmapps.metrics.bootstrap import bootstrap_ci
from mmapps.metrics.classification import roc_auc

Records = list[PredictionRecord]
Metric = Callable[[Records], float]


@dataclass(frozen=True)
class PairedDifference:
    """Mean over seeds of (a - b) with its paired bootstrap interval."""

    estimate: float
    low: float
    high: float
    resamples: int

    def format(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def as_dict(self) -> dict[str, float]:
        return {"diff": self.estimate, "ci_low": self.low, "ci_high": self.high, "resamples": self.resamples}


def aligned(records: Sequence[Records]) -> tuple[list[str], list[Records]]:
    """Every run's records in one sample order (the samples all runs scored)."""
    ids = sorted(set.intersection(*(set(r.sample_id for r in rows) for rows in records)))
    index = [{r.sample_id: r for r in rows} for rows in records]
    return ids, [[by_id[i] for i in ids] for by_id in index]


def paired_difference(metric: Metric, a: Sequence[Records], b: Sequence[Records], resamples: int, seed: int = 0) -> PairedDifference:
    """``mean_s metric(a_s) - metric(b_s)`` and its 95 % paired bootstrap CI, resampling test groups.

    Args:
        metric: records -> primary metric value.
        a, b: per seed, the test records of each arm (same test split).
        resamples: bootstrap resamples (0: the estimate alone).
    """
    ids, runs = aligned([*a, *b])
    n = len(a)
    groups = np.array([runs[0][i].group_id for i in range(len(ids))])
    prepare = getattr(metric, "prepare", None) or (lambda records: lambda rows: metric([records[i] for i in rows]))
    scorers = [prepare(records) for records in runs]  # a metric with `prepare` builds its arrays once per run

    def statistic(rows: np.ndarray) -> float:
        return float(np.mean([scorers[s](rows) - scorers[n + s](rows) for s in range(n)]))

    ci = bootstrap_ci(statistic, [np.arange(len(ids))], groups=groups, n_resamples=resamples, seed=seed)
    return PairedDifference(ci.estimate, ci.low, ci.high, resamples)


def macro_auroc_of(labels: Sequence[int]) -> Metric:
    """Macro AUROC over the given label indices of multi-label ``scores`` predictions (unlabelled targets skipped)."""

    def metric(records: Records) -> float:
        scores = np.array([r.prediction["scores"] for r in records], dtype=float)  # (N, C)
        targets = np.array([r.target for r in records], dtype=float)  # (N, C)
        values = []
        for j in labels:
            keep = np.isin(targets[:, j], (0.0, 1.0))
            y = targets[keep, j]
            if 0 < y.sum() < len(y):
                values.append(roc_auc(y, scores[keep, j]))
        return float(np.mean(values)) if values else math.nan

    def prepare(records: Records) -> Callable[[np.ndarray], float]:
        scores = np.array([r.prediction["scores"] for r in records], dtype=float)
        targets = np.array([r.target for r in records], dtype=float)

        def on_rows(rows: np.ndarray) -> float:
            values = []
            for j in labels:
                y, s = targets[rows, j], scores[rows, j]
                keep = np.isin(y, (0.0, 1.0))
                if 0 < y[keep].sum() < keep.sum():
                    values.append(roc_auc(y[keep], s[keep]))
            return float(np.mean(values)) if values else math.nan

        return on_rows

    metric.prepare = prepare  # type: ignore[attr-defined]
    return metric


def finding_groups(data_root: Path | None, labels: Sequence[str]) -> dict[str, list[int]]:
    """Group -> label indices from ``finding_sources.json`` (the medical demo writes which modality carries each finding)."""
    import json

    path = Path(data_root or "") / "finding_sources.json"
    if not path.is_file():
        return {}
    sources = json.loads(path.read_text())
    return {group: [labels.index(f) for f in findings if f in labels] for group, findings in sources.items() if group != "derived"}


class PeakMemory:
    """Resident-set high-water mark of this process over a block (Linux: reset through /proc/self/clear_refs)."""

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.mb = math.nan
        return self

    def __exit__(self, *exc: object) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                self.mb = int(line.split()[1]) / 1024.0
