"""Clinical notes and radiology reports: section splitting and the report-leakage guard.

In MIMIC-CXR and CheXpert the labels were extracted by NLP from the report's FINDINGS and
IMPRESSION. Feeding those sections to the model lets it re-read its labels, so the default input
is the clinical context only, decided as follows (`select_note`):

- A note whose headers are all known *context* headers (INDICATION, HISTORY, CLINICAL INFORMATION,
  COMPARISON, TECHNIQUE, REASON FOR EXAM...) gives its ``note_sections``.
- A report (it also has known *report* headers: FINDINGS, IMPRESSION and their variants such as
  ``FINDINGS AND IMPRESSION:``, ``OPINION:``, ``CONCLUSION``, ``IMPRESSION`` alone on a line, in
  any case, with or without a colon) gives its context sections only; the report sections are
  never fed without ``allow_report_leakage``.
- A note with a header that is neither (``WET READ:``, ``NOTE:``...), or without any header, is
  refused (`NoteRefusedError`): header-less text is as likely to be an impression as a referral.
  The manifest's ``note_kind`` declares such a note as context (``referral``...), and it is then
  fed whole, unless it holds a report header.
- With ``allow_report_leakage`` the requested sections are fed, and a note that cannot be split
  into known sections is fed whole; the run's report says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

CONTEXT_SECTIONS = ("indication", "history")
LEAKING_SECTIONS = ("findings", "impression")
KNOWN_SECTIONS = ("indication", "history", "comparison", "technique", "findings", "impression", "examination")
# note_kind values that declare a note to be clinical context (fed whole); "report" means sections.
CONTEXT_KINDS = ("referral", "request", "indication", "history", "clinical", "context")
NOTE_KINDS = (*CONTEXT_KINDS, "report")

# Context header spellings (MIMIC-CXR, Open-I, referral letters) -> canonical section.
_CONTEXT_HEADERS = {
    "INDICATION": "indication", "INDICATIONS": "indication", "CLINICAL INDICATION": "indication",
    "REASON FOR EXAM": "indication", "REASON FOR EXAMINATION": "indication", "REASON FOR STUDY": "indication",
    "REASON FOR REQUEST": "indication", "REASON FOR REFERRAL": "indication", "CLINICAL QUESTION": "indication",
    "HISTORY": "history", "CLINICAL HISTORY": "history", "MEDICAL HISTORY": "history", "PAST MEDICAL HISTORY": "history",
    "CLINICAL INFORMATION": "history", "CLINICAL INFO": "history", "CLINICAL DETAILS": "history",
    "COMPARISON": "comparison", "COMPARISONS": "comparison", "PRIOR STUDIES": "comparison",
    "TECHNIQUE": "technique", "PROCEDURE": "technique", "EXAMINATION": "examination", "EXAM": "examination",
}
# Report header spellings: the text the labels come from -> canonical section.
_REPORT_HEADERS = {
    "FINDINGS": "findings", "FINDING": "findings", "RESULT": "findings", "RESULTS": "findings",
    "IMPRESSION": "impression", "IMPRESSIONS": "impression", "FINDINGS AND IMPRESSION": "impression",
    "IMPRESSION AND FINDINGS": "impression", "FINDINGS/IMPRESSION": "impression", "FINDINGS IMPRESSION": "impression",
    "CONCLUSION": "impression", "CONCLUSIONS": "impression", "OPINION": "impression", "SUMMARY": "impression",
    "INTERPRETATION": "impression", "DIAGNOSIS": "impression", "FINAL DIAGNOSIS": "impression",
    "ASSESSMENT": "impression", "RECOMMENDATION": "impression", "RECOMMENDATIONS": "impression",
    "WET READ": "impression", "ADDENDUM": "impression",
}
_HEADER_TO_SECTION = {**_CONTEXT_HEADERS, **_REPORT_HEADERS}


def _alternatives(names) -> str:
    return "|".join(sorted((re.escape(h).replace(" ", r"[ \t]+") for h in names), key=len, reverse=True))


_KNOWN = _alternatives(_HEADER_TO_SECTION)
_LEAD = _alternatives(("FINDINGS AND IMPRESSION", "FINDINGS", "IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "OPINION"))
# "NAME:" at a line start (any words); a known name alone on its line; FINDINGS / IMPRESSION /
# CONCLUSION / OPINION starting a line in any case, or another report name in capitals, followed by
# text ("Impression left effusion."); a known "NAME:" inside a line (flattened reports).
_HEADER_RE = re.compile(
    rf"^[ \t]*(?:(?P<colon>[A-Za-z][A-Za-z/&() \t-]{{0,40}}?)[ \t]*:"
    rf"|(?P<bare>{_KNOWN})[ \t]*:?[ \t]*$"
    rf"|(?P<lead>{_LEAD})(?=[ \t]+\S)"
    rf"|(?P<caps>(?-i:{_alternatives(_REPORT_HEADERS)}))(?=[ \t]+\S))"
    rf"|(?<=[.;,!?)][ \t])[ \t]*(?P<inline>{_KNOWN})[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_TITLES = {"FINAL REPORT", "PRELIMINARY REPORT", "RADIOLOGY REPORT", "CHEST RADIOGRAPH REPORT"}


class ReportLeakageError(ValueError):
    """FINDINGS / IMPRESSION were requested as model input without ``allow_report_leakage``."""


class NoteRefusedError(ValueError):
    """A note that is not known to be clinical context (unknown headers, no headers, a report declared as context)."""


class NoteSelection(NamedTuple):
    """The model input taken from one note: ``text`` (None = no note) and ``fed`` (what was fed, for the report)."""

    text: str | None
    fed: str


def _name(raw: str) -> str:
    return re.sub(r"[ \t]+", " ", raw.strip()).upper()


def find_headers(text: str) -> list[tuple[int, int, str]]:
    """Every header of a note as ``(start, end, NAME)``; NAME is upper-cased with single spaces."""
    headers = []
    for match in _HEADER_RE.finditer(text):
        name = _name(next(g for g in match.group("colon", "bare", "lead", "caps", "inline") if g))
        if len(name.split()) > 5 or name in _TITLES:
            continue
        headers.append((match.start(), match.end(), name))
    return headers


def split_sections(text: str) -> dict[str, str]:
    """Split a note into canonical sections.

    Args:
        text: the note or report.

    Returns:
        canonical section -> text (repeated sections are joined). Text before the first header is
        kept under ``"preamble"``; text under an unknown header under ``"unknown:<NAME>"``.
    """
    sections: dict[str, str] = {}
    headers = find_headers(text)
    head = text[: headers[0][0]] if headers else text
    if _clean(head) and _name(_clean(head)) not in _TITLES:
        sections["preamble"] = _clean(head)
    for i, (_, end, name) in enumerate(headers):
        stop = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        key = _HEADER_TO_SECTION.get(name, f"unknown:{name}")
        body = _clean(text[end:stop])
        if body or key.startswith("unknown:"):
            sections[key] = f"{sections[key]} {body}".strip() if key in sections else body
    return sections


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ")).strip()


def _check_sections(sections: Sequence[str], allow_report_leakage: bool) -> None:
    leaking = [s for s in sections if s in LEAKING_SECTIONS]
    if leaking and not allow_report_leakage:
        raise ReportLeakageError(
            f"note sections {leaking} hold the text the labels were extracted from; using them as input "
            "requires --allow-report-leakage (data.options.allow_report_leakage=true)"
        )
    unknown = [s for s in sections if s not in KNOWN_SECTIONS]
    if unknown:
        raise ValueError(f"note sections {unknown}: accepted {list(KNOWN_SECTIONS)}")


def select_note(
    text: str | None,
    sections: Sequence[str] = CONTEXT_SECTIONS,
    allow_report_leakage: bool = False,
    kind: str | None = None,
    where: str = "note",
) -> NoteSelection:
    """The part of a note that is the model input (rules in the module docstring).

    Args:
        text: the full note / report, or None.
        sections: canonical sections to keep, in order.
        allow_report_leakage: must be True when ``sections`` include FINDINGS or IMPRESSION.
        kind: the manifest's ``note_kind`` (one of `NOTE_KINDS`) or None to judge by the headers.
        where: the study, for errors.

    Returns:
        `NoteSelection`: ``"SECTION: text ..."`` joined with spaces (or the whole note), and what was fed.

    Raises:
        ReportLeakageError: a leaking section requested without the switch.
        NoteRefusedError: a note not known to be clinical context (see the module docstring).
        ValueError: an unknown section or note kind.
    """
    _check_sections(sections, allow_report_leakage)
    if kind is not None and kind not in NOTE_KINDS:
        raise ValueError(f"{where}: note_kind {kind!r}; accepted {', '.join(NOTE_KINDS)} or blank")
    if text is None or not text.strip():
        return NoteSelection(None, "none")
    parts = split_sections(text)
    names = [name for _, _, name in find_headers(text)]
    report = sorted({n for n in names if n in _REPORT_HEADERS})
    unknown = sorted({n for n in names if n not in _HEADER_TO_SECTION})
    if allow_report_leakage and (unknown or not names):
        return NoteSelection(_clean(text), "whole note (leakage allowed)")
    if kind in CONTEXT_KINDS:
        if report:
            raise NoteRefusedError(f"{where}: note_kind is {kind!r} but the note has report header(s) {report}; "
                                   "fix the note_kind (report) or the note")
        return NoteSelection(_clean(text), f"whole note (note_kind={kind})")
    if not names:
        raise NoteRefusedError(f"{where}: the note has no section header, so it cannot be told from report text "
                               f"(an impression); declare it with the manifest column note_kind ({', '.join(CONTEXT_KINDS)}) "
                               "or give it headers such as INDICATION: / HISTORY:")
    if unknown:
        raise NoteRefusedError(f"{where}: the note has header(s) {unknown}, which are neither clinical context "
                               f"({', '.join(sorted(_CONTEXT_HEADERS)[:6])}...) nor known report sections; its text could "
                               "hold findings, so it is not fed (declare note_kind, or rename the headers)")
    kept = [f"{name.upper()}: {parts[name]}" for name in sections if parts.get(name)]
    fed = "+".join(s.upper() for s in sections) + " sections"
    return NoteSelection(" ".join(kept) or None, fed if kept else "none (no requested section)")


def select_note_text(text: str | None, sections: Sequence[str] = CONTEXT_SECTIONS, allow_report_leakage: bool = False,
                     kind: str | None = None) -> str | None:
    """`select_note`'s text only."""
    return select_note(text, sections, allow_report_leakage, kind).text


NOTE_SUFFIXES = (".txt", ".xml")


def read_note_file(path: str | Path, base_dir: Path | None = None) -> str:
    """The text of a note file: plain text (``.txt``) or a BioC XML document (``.xml``).

    Args:
        path: the note file (relative to ``base_dir``).
        base_dir: folder relative paths are resolved against.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unsupported suffix, or an unreadable BioC file.
    """
    path = Path(str(path).strip())
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.suffix.lower() not in NOTE_SUFFIXES:
        raise ValueError(f"{path}: note_path suffix {path.suffix or '(none)'!r} is not supported; accepted "
                         f"{', '.join(NOTE_SUFFIXES)} (BioC XML); put inline text in the note_text column")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: note file not found (note_path)")
    if path.suffix.lower() == ".xml":
        from mmapps_domains.medical.bioc import read_bioc_text

        return read_bioc_text(path)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise ValueError(f"{path}: note file could not be read ({err.strerror or err})") from None
