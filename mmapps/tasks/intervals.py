"""One metric value with its group-bootstrap interval, written under the ``<metric>/ci_low|ci_high`` keys.

Every core task-metric function reports intervals the same way, so the CLI and the report can show
``value [low, high]`` for any key that has them:

- ``<metric>``: the estimate on all records (NaN when undefined, e.g. one class only);
- ``<metric>/ci_low``, ``<metric>/ci_high``: percentile-bootstrap bounds at ``cfg.eval.ci_level``,
  resampling whole groups (``Sample.group_id``: patient, drive, clip) ``cfg.eval.bootstrap_resamples``
  times with ``cfg.seed``;
- ``<metric>/ci_degenerate``: resamples on which the metric was undefined (left out of the interval).

With ``cfg.eval.bootstrap_resamples == 0`` (the trainer's per-epoch validation) only ``<metric>`` is written.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from mmapps.metrics import bootstrap_ci


def eval_settings(cfg: Any) -> tuple[int, float, int]:
    """``(bootstrap_resamples, ci_level, seed)`` from a run config (200, 0.95, 0 when `cfg` is None)."""
    ev = getattr(cfg, "eval", None)
    return int(getattr(ev, "bootstrap_resamples", 200)), float(getattr(ev, "ci_level", 0.95)), int(getattr(cfg, "seed", 0) or 0)


def put_metric(out: dict[str, float], key: str, statistic: Callable[..., float], arrays: Sequence[np.ndarray], groups: np.ndarray, cfg: Any) -> None:
    """Write ``out[key]`` and, when the config asks for intervals, its ``/ci_low``, ``/ci_high``, ``/ci_degenerate``.

    Args:
        out: the metrics dict being filled.
        key: the metric key, e.g. ``auroc/macro``.
        statistic: ``statistic(*arrays) -> float``; raises ValueError (or returns NaN) where undefined.
        arrays: aligned arrays, one row per resampling unit member.
        groups: group key per row; a bootstrap resample draws whole groups.
        cfg: the run config (or None for the defaults of `eval_settings`).
    """
    n, level, seed = eval_settings(cfg)
    if n <= 0:
        try:
            out[key] = float(statistic(*arrays))
        except (ValueError, ZeroDivisionError):
            out[key] = math.nan
        return
    ci = bootstrap_ci(statistic, arrays, groups=groups, n_resamples=n, level=level, seed=seed)
    out.update({key: ci.estimate, f"{key}/ci_low": ci.low, f"{key}/ci_high": ci.high, f"{key}/ci_degenerate": float(ci.n_degenerate)})


def task_label_names(cfg: Any, task: str, n_labels: int) -> list[str]:
    """The label names of `task` in this run (the domain's, after ``labels_option``), else ``label_0..``.

    Looked up through the installed domain named by ``cfg.domain``; any failure (no config, a
    domain not installed, a count that does not match the outputs) falls back to positional names.
    """
    try:
        from mmapps.domain import with_configured_labels
        from mmapps.plugins import get_domain

        labels = list(with_configured_labels(get_domain(cfg.domain), cfg).task(task).labels)
    except Exception:  # metrics must not fail on a naming lookup
        labels = []
    return labels if len(labels) == n_labels else [f"label_{j}" for j in range(n_labels)]
