"""Replacement values: dummies consistent with the VR (action D), cleaned text (action C), shifted dates."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})
TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
DUMMY_TEXT = "ANONYMIZED"
REMOVED_MARK = "[REMOVED]"
_DUMMY_BY_VR: dict[str, Any] = {
    "PN": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y",
    "DS": "0", "IS": "0", "UR": "http://anonymized.invalid", "AT": 0,
}


def dummy_value(vr: str, current: Any) -> Any:
    """A non-empty value consistent with ``vr`` that carries no information (Table E.1-1a, action D)."""
    if vr in _DUMMY_BY_VR:
        return _DUMMY_BY_VR[vr]
    if vr in TEXT_VRS:
        return DUMMY_TEXT
    if vr in NUMBER_VRS:
        return 0
    if vr in BINARY_VRS:
        size = len(current) if isinstance(current, (bytes, bytearray)) else 0
        return b"\x00" * (size + size % 2)
    return None


# Dates a person might type in free text: 2024-03-01, 01/03/2024, 1.3.24, 20240301, 1 March 2024.
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DATE_PATTERNS = (
    re.compile(r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b"),
    re.compile(r"\b(19|20)\d{6}\b"),
    re.compile(rf"\b\d{{1,2}}\s*(?:{_MONTHS})[a-z]*\.?\s*\d{{2,4}}\b", re.IGNORECASE),
    re.compile(rf"\b(?:{_MONTHS})[a-z]*\.?\s+\d{{1,2}},?\s+\d{{2,4}}\b", re.IGNORECASE),
)
_DIGIT_RUN = re.compile(r"\d[\d\- ]{4,}\d")  # record numbers, phone numbers (5+ digits)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def identifier_tokens(values: Iterable[str]) -> list[str]:
    """Strings to scrub from free text: each identifying value and each of its name parts (>= 3 characters)."""
    tokens: set[str] = set()
    for value in values:
        value = value.strip()
        if len(value) >= 3:
            tokens.add(value)
        for part in re.split(r"[\^=\s,]+", value):
            if len(part) >= 3 and not part.isdigit() or len(part) >= 5:
                tokens.add(part)
    return sorted(tokens, key=len, reverse=True)


def clean_text(text: str, tokens: list[str]) -> str:
    """Action C on free text: the file's own identifying values, dates, e-mails and long digit runs removed.

    This is what can be done without a reader: text that identifies by other means (a rare diagnosis
    with a town, a nickname) is not found. The Clean options say so in docs/deidentify.md.
    """
    out = text
    for token in tokens:
        out = re.sub(re.escape(token), REMOVED_MARK, out, flags=re.IGNORECASE)
    for pattern in (_EMAIL, *_DATE_PATTERNS, _DIGIT_RUN):
        out = pattern.sub(REMOVED_MARK, out)
    return out


def shift_temporal(value: str, vr: str, days: int) -> str:
    """Move a DA or DT value back by ``days`` (TM and the time part of DT are kept); '' if not parseable."""
    if vr == "TM" or not value:
        return value
    text = value.strip()
    head, tail = text[:8], text[8:]
    try:
        date = dt.datetime.strptime(head, "%Y%m%d").date()
    except ValueError:
        return ""  # a malformed date is removed rather than kept unshifted
    shifted = date - dt.timedelta(days=days)
    return shifted.strftime("%Y%m%d") + (tail if vr == "DT" else "")
