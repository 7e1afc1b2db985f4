"""CheXpert-style labels: 1 = positive, 0 = negative, -1 = uncertain, blank = not mentioned.

Policies (Irvin et al., CheXpert, AAAI 2019):

- uncertain: ``u-ignore`` (NaN: masked out of the loss and the metrics), ``u-zeros`` (-> 0),
  ``u-ones`` (-> 1).
- blank: ``negative`` (-> 0, as in the CheXpert competition) or ``masked`` (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
COMPETITION_FINDINGS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

UncertainPolicy = Literal["u-ignore", "u-zeros", "u-ones"]
BlankPolicy = Literal["negative", "masked"]
_UNCERTAIN_TO_VALUE = {"u-ignore": math.nan, "u-zeros": 0.0, "u-ones": 1.0}
_BLANK_TO_VALUE = {"negative": 0.0, "masked": math.nan}


class LabelError(ValueError):
    """A label value outside {1, 0, -1, blank}: the study is skipped or the run stops."""


def parse_label(raw: object, column: str, where: str) -> float | None:
    """One CSV cell -> 1.0 / 0.0 / -1.0, or None for blank.

    A ``nan`` / ``NaN`` cell is refused, not read as blank: it is what pandas writes for a missing
    value, so the table went through a tool that may also have shifted or retyped other cells, and
    CheXpert's own files write "not mentioned" as an empty cell.

    Args:
        raw: cell text ("1.0", "0", "-1", "") or number.
        column: label column (for the error).
        where: file and row (for the error).

    Raises:
        LabelError: for anything else, NaN included.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if text == "":
        return None
    if text.lower() in ("nan", "+nan", "-nan") or (isinstance(raw, float) and math.isnan(raw)):
        raise LabelError(f"{where}: label column {column!r} has value {text!r} (NaN, as pandas writes a missing value); "
                         "accepted 1, 0, -1 (uncertain) or an empty cell (not mentioned); rewrite the table with empty cells")
    try:
        value = float(text)
    except ValueError:
        value = math.inf
    if value not in (1.0, 0.0, -1.0):
        raise LabelError(f"{where}: label column {column!r} has value {text!r}; accepted 1, 0, -1 (uncertain) or blank (not mentioned)")
    return value


def encode_labels(
    row: Mapping[str, object],
    findings: Sequence[str],
    where: str,
    uncertain: UncertainPolicy = "u-ignore",
    blank: BlankPolicy = "negative",
) -> np.ndarray:
    """A CSV row -> float32 ``(len(findings),)`` training targets with NaN = ignored.

    Args:
        row: column -> cell (a missing column counts as blank).
        findings: label columns in output order.
        where: file and row, for errors.
        uncertain: policy for -1.
        blank: policy for blank.

    Returns:
        float32 array; NaN where the label is masked out of the loss and the metrics.

    Raises:
        LabelError: a value outside {1, 0, -1, blank}; ValueError: an unknown policy.
    """
    if uncertain not in _UNCERTAIN_TO_VALUE:
        raise ValueError(f"uncertain-label policy {uncertain!r}: accepted {sorted(_UNCERTAIN_TO_VALUE)}")
    if blank not in _BLANK_TO_VALUE:
        raise ValueError(f"blank-label policy {blank!r}: accepted {sorted(_BLANK_TO_VALUE)}")
    out = np.empty(len(findings), dtype=np.float32)
    for i, name in enumerate(findings):
        value = parse_label(row.get(name), name, where)
        if value is None:
            out[i] = _BLANK_TO_VALUE[blank]
        elif value == -1.0:
            out[i] = _UNCERTAIN_TO_VALUE[uncertain]
        else:
            out[i] = value
    return out


def check_findings(findings: Sequence[str], columns: Sequence[str], source: str) -> None:
    """Raise when a configured finding has no column in the label file."""
    missing = [f for f in findings if f not in columns]
    if missing:
        raise ValueError(f"{source}: label column(s) {missing} not found; the file has {list(columns)}")
