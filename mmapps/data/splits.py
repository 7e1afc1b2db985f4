"""What a domain's ``build_datasets`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from mmapps.data.issues import IssueLog


@dataclass
class DatasetSplits:
    """Train / validation / test datasets of `Sample`s, plus what was skipped while reading.

    Attributes:
        train, val, test: map-style datasets whose items are `mmapps.data.Sample`.
        issues: per-sample failures met while indexing the data (counted in the run summary).
        split_of_group: group id (patient, drive, clip) -> split name; saved in the run directory.
        info: free-form facts for the report (counts, label prevalence, data root...).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    issues: IssueLog = field(default_factory=IssueLog)
    split_of_group: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def split_seed(cfg: Any) -> int:
    """The seed a domain splits its data (and seeds its generated demo data) with: ``data.split_seed``, else the run seed."""
    fixed = getattr(cfg.data, "split_seed", None)
    return int(cfg.seed if fixed is None else fixed)
