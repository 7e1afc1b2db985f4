"""Patient-disjoint train / val / test splits: the given split (official MIMIC-CXR or manifest column) or a seeded one."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmapps_domains.medical.records import StudyRecord

SPLITS = ("train", "val", "test")


def split_by_patient(records: Sequence[StudyRecord], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Assign each patient (subject_id) to one split.

    Args:
        records: studies; when every record has a ``split`` the given split is used (and checked),
            otherwise patients are shuffled with ``seed`` and cut by ``fractions`` of patients.
        fractions: train / val / test shares of patients.
        seed: shuffling seed.

    Returns:
        subject_id -> ``train`` | ``val`` | ``test``.

    Raises:
        ValueError: when a given split puts one patient in two splits, or only some rows have a split.
    """
    given = [r.split for r in records]
    if any(s is not None for s in given):
        if any(s is None for s in given):
            blank = next(r for r in records if r.split is None)
            raise ValueError(f"{blank.where}: split is blank while other rows have one; give a split for every study or for none")
        split_of_patient: dict[str, str] = {}
        for r in records:
            previous = split_of_patient.setdefault(r.subject_id, r.split)
            if previous != r.split:
                raise ValueError(f"{r.where}: subject_id {r.subject_id} is in both {previous!r} and {r.split!r}; splits must be patient-disjoint")
        return split_of_patient
    patients = sorted({r.subject_id for r in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    n_train = int(round(fractions[0] * len(patients)))
    n_val = int(round(fractions[1] * len(patients)))
    if len(patients) >= 3:  # keep every split non-empty on tiny data
        n_train = min(max(n_train, 1), len(patients) - 2)
        n_val = min(max(n_val, 1), len(patients) - n_train - 1)
    out = {}
    for rank, index in enumerate(order):
        out[patients[index]] = "train" if rank < n_train else ("val" if rank < n_train + n_val else "test")
    return out
