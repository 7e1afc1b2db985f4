"""Clinical notes and radiology reports: section splitting and the report-leakage guard.

In MIMIC-CXR and CheXpert the labels were extracted by NLP from the report's FINDINGS and
IMPRESSION. Feeding those sections to the model lets it re-read its labels, so the default input
is the clinical context only (INDICATION + HISTORY, or a whole referral note without headers);
FINDINGS / IMPRESSION are used only with ``allow_report_leakage=True``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

CONTEXT_SECTIONS = ("indication", "history")
LEAKING_SECTIONS = ("findings", "impression")
KNOWN_SECTIONS = ("indication", "history", "comparison", "technique", "findings", "impression", "examination")

# Header spellings seen in MIMIC-CXR / Open-I reports and referral letters -> canonical section.
_HEADER_TO_SECTION = {
    "INDICATION": "indication",
    "INDICATIONS": "indication",
    "REASON FOR EXAM": "indication",
    "REASON FOR EXAMINATION": "indication",
    "REASON FOR STUDY": "indication",
    "CLINICAL INDICATION": "indication",
    "CLINICAL INFORMATION": "history",
    "HISTORY": "history",
    "CLINICAL HISTORY": "history",
    "MEDICAL HISTORY": "history",
    "COMPARISON": "comparison",
    "COMPARISONS": "comparison",
    "TECHNIQUE": "technique",
    "EXAMINATION": "examination",
    "EXAM": "examination",
    "FINDINGS": "findings",
    "FINDING": "findings",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
    "CONCLUSION": "impression",
}
_HEADER_RE = re.compile(
    r"^[ \t]*(" + "|".join(sorted((re.escape(h) for h in _HEADER_TO_SECTION), key=len, reverse=True)) + r")[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


class ReportLeakageError(ValueError):
    """FINDINGS / IMPRESSION were requested as model input without ``allow_report_leakage``."""


def split_sections(text: str) -> dict[str, str]:
    """Split a note into canonical sections.

    Args:
        text: the note or report. Headers are ``NAME:`` at the start of a line (case-insensitive).

    Returns:
        canonical section -> text (repeated sections are joined). Text before the first header is
        kept under ``"preamble"``; a note without any header is returned as ``{"preamble": text}``.
    """
    sections: dict[str, str] = {}
    matches = list(_HEADER_RE.finditer(text))
    head = text[: matches[0].start()] if matches else text
    if head.strip():
        sections["preamble"] = _clean(head)
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = _HEADER_TO_SECTION[match.group(1).upper()]
        body = _clean(text[match.end() : end])
        if body:
            sections[name] = f"{sections[name]} {body}" if name in sections else body
    return sections


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ")).strip()


def select_note_text(
    text: str | None,
    sections: Sequence[str] = CONTEXT_SECTIONS,
    allow_report_leakage: bool = False,
) -> str | None:
    """The part of a note that is the model input.

    Args:
        text: the full note / report, or None.
        sections: canonical sections to keep, in order.
        allow_report_leakage: must be True when ``sections`` include FINDINGS or IMPRESSION.

    Returns:
        ``"SECTION: text ..."`` joined with spaces, or None when nothing is left (the note is then
        treated as missing, handled by the ``present`` mask). A note without headers (a referral
        note) is wholly clinical context.

    Raises:
        ReportLeakageError: when a leaking section is requested without the switch.
    """
    leaking = [s for s in sections if s in LEAKING_SECTIONS]
    if leaking and not allow_report_leakage:
        raise ReportLeakageError(
            f"note sections {leaking} hold the text the labels were extracted from; using them as input "
            "requires --allow-report-leakage (data.options.allow_report_leakage=true)"
        )
    unknown = [s for s in sections if s not in KNOWN_SECTIONS]
    if unknown:
        raise ValueError(f"note sections {unknown}: accepted {list(KNOWN_SECTIONS)}")
    if text is None or not text.strip():
        return None
    parts = split_sections(text)
    if set(parts) == {"preamble"}:
        return parts["preamble"]
    kept = [f"{name.upper()}: {parts[name]}" for name in sections if name in parts]
    return " ".join(kept) or None


def read_note(source: str | Path | None, base_dir: Path | None = None) -> str | None:
    """A note given as a path (``*.txt``, relative to ``base_dir``) or inline text.

    Args:
        source: path or inline text; empty / None means no note.
        base_dir: folder relative paths are resolved against.

    Returns:
        The text, or None when there is no note.

    Raises:
        FileNotFoundError: when ``source`` looks like a ``.txt`` path that does not exist.
    """
    if source is None:
        return None
    source = str(source)
    if not source.strip():
        return None
    if source.lower().endswith(".txt") and "\n" not in source:
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: note file not found")
        return path.read_text(encoding="utf-8", errors="replace")
    return source
