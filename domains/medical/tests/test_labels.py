"""CheXpert label parsing and uncertainty / blank policies."""

from __future__ import annotations

import numpy as np
import pytest
from mmapps_domains.medical.labels import (
    CHEXPERT_FINDINGS,
    COMPETITION_FINDINGS,
    LabelError,
    check_findings,
    encode_labels,
)

ROW = {"Edema": "1.0", "Cardiomegaly": "-1.0", "Atelectasis": "", "Consolidation": "0", "Pleural Effusion": " "}
FIVE = list(COMPETITION_FINDINGS)  # Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion


def test_fourteen_findings():
    assert len(CHEXPERT_FINDINGS) == 14 and set(COMPETITION_FINDINGS) <= set(CHEXPERT_FINDINGS)


@pytest.mark.parametrize(
    "uncertain, blank, expected",
    [
        ("u-ignore", "negative", [0, np.nan, 0, 1, 0]),
        ("u-zeros", "negative", [0, 0, 0, 1, 0]),
        ("u-ones", "negative", [0, 1, 0, 1, 0]),
        ("u-ones", "masked", [np.nan, 1, 0, 1, np.nan]),
        ("u-ignore", "masked", [np.nan, np.nan, 0, 1, np.nan]),
    ],
)
def test_policies(uncertain, blank, expected):
    out = encode_labels(ROW, FIVE, "labels.csv row 2", uncertain, blank)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float32))


def test_missing_column_is_blank():
    out = encode_labels({}, ["Edema"], "x", blank="masked")
    assert np.isnan(out[0])


@pytest.mark.parametrize("bad", ["2", "yes", "0.5", "-2"])
def test_values_outside_the_set_are_errors(bad):
    with pytest.raises(LabelError, match=r"labels.csv row 7: label column 'Edema' has value '" + bad):
        encode_labels({"Edema": bad}, ["Edema"], "labels.csv row 7")


@pytest.mark.parametrize("nan", ["nan", "NaN", "NAN", float("nan")])
def test_nan_is_refused_not_read_as_blank(nan):
    with pytest.raises(LabelError, match=r"labels.csv row 3: label column 'Edema' has value '(nan|NaN|NAN)' \(NaN.*empty cell"):
        encode_labels({"Edema": nan}, ["Edema"], "labels.csv row 3", blank="negative")


def test_unknown_policy_and_missing_columns():
    with pytest.raises(ValueError, match="u-maybe"):
        encode_labels(ROW, FIVE, "x", uncertain="u-maybe")
    with pytest.raises(ValueError, match="Fracture"):
        check_findings(["Fracture"], ["Edema"], "labels.csv")
