"""Apply Table E.1-1 to a pydicom dataset, in place, recursing into every sequence.

Modes of the walk: ``profile`` applies each attribute's own action; inside a sequence whose action is
D (replace with dummy; e.g. Content Sequence, Graphic Annotation Sequence) every value the table does
not govern is replaced by a dummy too (``dummy``), keeping the structure and the codes of standard
coding schemes; inside a sequence cleaned by an option (C) the free text the table would remove or
replace is cleaned instead (``clean``), so cleaned content stays readable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .keys import DeidKey
from .options import DeidOptions
from .requirement import requirement_type, resolve_conditional
from .safe_private import SafePrivateKey, is_safe_private
from .table import CONDITIONAL_ACTIONS, ProfileTable
from .values import BINARY_VRS, TEMPORAL_VRS, clean_text, dummy_value, shift_temporal

Mode = Literal["profile", "dummy", "clean"]
PATIENT_ID = 0x00100020
DICOM_ROOT = "1.2.840.10008."  # UIDs defined by the standard (SOP classes, transfer syntaxes): never replaced
FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
DUMMY_MODE_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "DA", "DT", "TM", "AS", "UR"})
CODE_MACRO_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080104, 0x00080119, 0x00080120, 0x0008010F, 0x00080105})
STANDARD_SCHEMES = frozenset({"DCM", "SCT", "SRT", "LN", "UCUM", "FMA", "RADLEX", "NCIT", "UMLS", "I10", "I9C", "ICD10", "MSH", "ACR", "HL7", "UBERON"})
IDENTITY_TAGS = frozenset({
    0x00100020, 0x00101000, 0x00080050, 0x00200010, 0x00080080, 0x00080081, 0x00081040, 0x00081010, 0x00181000,
    0x00101040, 0x00102154, 0x00101090, 0x00380010, 0x00100021, 0x00401001, 0x00400009, 0x00400253, 0x0018700A,
    0x00080092, 0x00102150, 0x00102152, 0x00120040, 0x00120042,
})


@dataclass
class WalkContext:
    """What every level of the walk needs."""

    table: ProfileTable
    options: DeidOptions
    key: DeidKey
    safe_private: frozenset[SafePrivateKey]
    sop_class: str
    top: Dataset
    tokens: list[str]
    shift_days: int
    counts: Counter


def collect_identifiers(ds: Dataset) -> list[str]:
    """Person names and identifier values anywhere in ``ds`` (read before any change), for cleaning free text."""
    found: list[str] = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                found += collect_identifiers(item)
        elif (elem.VR == "PN" or int(elem.tag) in IDENTITY_TAGS) and elem.value not in (None, ""):
            values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
            found += [str(v) for v in values if str(v).strip()]
    return found


def walk(ds: Dataset, ctx: WalkContext, parents: tuple[int, ...] = (), mode: Mode = "profile") -> None:
    """De-identify one dataset level (and, recursively, every item below it)."""
    _private_elements(ds, ctx)
    for elem in list(ds):
        tag = int(elem.tag)
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1:
            continue  # private: handled above
        if element == 0 and group != 0x0002:
            del ds[tag]  # group lengths go stale once values change
            continue
        if 0x6000 <= group <= 0x601E:
            overlay = ctx.table.row_for((group << 16) | 0x3000)
            if overlay is not None and overlay.action(ctx.options.enabled) in ("X", "C"):
                # an overlay bitmap cannot be checked for burned-in text: the plane goes whole
                del ds[tag]
                ctx.counts["overlay plane elements removed"] += 1
                continue
        row = ctx.table.row_for(tag)
        if row is None:
            _unlisted(ds, elem, ctx, parents, mode)
            continue
        action = row.action(ctx.options.enabled)
        if action in CONDITIONAL_ACTIONS:
            action = resolve_conditional(action, requirement_type(tag, ctx.sop_class, ctx.top, parents))
        if mode == "clean" and action in ("X", "Z", "D") and elem.VR in FREE_TEXT_VRS:
            action = "C"
        _apply(ds, elem, action, ctx, parents, mode)


def _apply(ds: Dataset, elem: DataElement, action: str, ctx: WalkContext, parents: tuple[int, ...], mode: Mode) -> None:
    tag, vr = int(elem.tag), elem.VR
    if tag == PATIENT_ID and action in ("Z", "D") and ctx.options.pseudonymize_patient_id:
        elem.value = ctx.key.pseudonym(str(elem.value)) if str(elem.value or "").strip() else ""
        ctx.counts["PatientID pseudonymised"] += 1
    elif action == "X":
        del ds[tag]
        ctx.counts["removed (X)"] += 1
    elif action == "Z":
        elem.value = [] if vr == "SQ" else ("" if vr in DUMMY_MODE_VRS or vr in ("CS", "UI", "IS", "DS") else None)
        ctx.counts["emptied (Z)"] += 1
    elif action == "K":
        _recurse(elem, ctx, parents, mode)
    elif action == "U" or (action == "D" and vr == "UI"):
        if vr == "SQ":
            _recurse(elem, ctx, parents, mode)
        else:
            _replace_uids(elem, ctx)
    elif action == "D":
        if vr == "SQ":
            _recurse(elem, ctx, parents, "dummy")
        else:
            _dummy(elem, ctx)
        ctx.counts["replaced with dummy (D)"] += 1
    elif action == "C":
        _clean(ds, elem, ctx, parents)
    else:
        raise AssertionError(f"unresolved action {action!r}")


def _unlisted(ds: Dataset, elem: DataElement, ctx: WalkContext, parents: tuple[int, ...], mode: Mode) -> None:
    """An attribute Table E.1-1 does not list: kept at the top level; replaced inside a dummy sequence."""
    if elem.VR == "SQ":
        _recurse(elem, ctx, parents, mode)
    elif mode == "dummy" and elem.VR in DUMMY_MODE_VRS | BINARY_VRS and not _standard_code(ds, elem):
        _dummy(elem, ctx)
    elif mode == "clean" and elem.VR in FREE_TEXT_VRS and not _standard_code(ds, elem):
        _clean(ds, elem, ctx, parents)


def _standard_code(ds: Dataset, elem: DataElement) -> bool:
    scheme = str(ds.get("CodingSchemeDesignator", "") or "").strip().upper()
    return int(elem.tag) in CODE_MACRO_TAGS and scheme in STANDARD_SCHEMES


def _recurse(elem: DataElement, ctx: WalkContext, parents: tuple[int, ...], mode: Mode) -> None:
    if elem.VR == "SQ":
        for item in elem.value or []:
            walk(item, ctx, parents + (int(elem.tag),), mode)


def _dummy(elem: DataElement, ctx: WalkContext) -> None:
    if elem.VR == "UI":
        _replace_uids(elem, ctx)
        return
    value = dummy_value(elem.VR, elem.value)
    elem.value = value if value is not None else None


def _replace_uids(elem: DataElement, ctx: WalkContext) -> None:
    if elem.value in (None, ""):
        return
    values = list(elem.value) if isinstance(elem.value, MultiValue) else [elem.value]
    new = [v if str(v).startswith(DICOM_ROOT) else ctx.key.uid(str(v)) for v in values]
    elem.value = new if len(new) > 1 else new[0]
    ctx.counts["UIDs replaced (U)"] += 1


def _clean(ds: Dataset, elem: DataElement, ctx: WalkContext, parents: tuple[int, ...]) -> None:
    vr = elem.VR
    if vr == "SQ":
        _recurse(elem, ctx, parents, "clean")
    elif vr in TEMPORAL_VRS:
        if ctx.options.retain_modified_dates:
            values = list(elem.value) if isinstance(elem.value, MultiValue) else [elem.value]
            shifted = [shift_temporal(str(v), vr, ctx.shift_days) for v in values if v not in (None, "")]
            elem.value = shifted if len(shifted) > 1 else (shifted[0] if shifted else "")
            ctx.counts["dates shifted (C)"] += 1
            return
        elem.value = dummy_value(vr, elem.value)
    elif vr in FREE_TEXT_VRS and isinstance(elem.value, (str, MultiValue)):
        values = list(elem.value) if isinstance(elem.value, MultiValue) else [elem.value]
        cleaned = [clean_text(str(v), ctx.tokens) for v in values]
        elem.value = cleaned if len(cleaned) > 1 else cleaned[0]
    elif vr in BINARY_VRS:
        del ds[int(elem.tag)]  # opaque bytes cannot be cleaned
        ctx.counts["removed (X)"] += 1
        return
    elif vr not in ("CS", "US", "SS", "UL", "SL", "FL", "FD", "IS", "DS"):
        elem.value = dummy_value(vr, elem.value)
    ctx.counts["cleaned (C)"] += 1


def _private_elements(ds: Dataset, ctx: WalkContext) -> None:
    """Remove private elements, keeping only safe ones (with Retain Safe Private) and the creators they need."""
    private = [int(e.tag) for e in ds if e.tag.is_private]
    if not private:
        return
    keep: set[int] = set()
    if ctx.options.retain_safe_private:
        for tag in private:
            element = tag & 0xFFFF
            if element >= 0x1000 and ds[tag].VR != "SQ" and is_safe_private(ds, tag, ctx.safe_private):
                keep.add(tag)
                keep.add((tag & 0xFFFF0000) | (element >> 8))  # its Private Creator
    for tag in private:
        if tag not in keep:
            del ds[tag]
    ctx.counts["private elements removed"] += len(private) - len(keep)
    ctx.counts["safe private elements kept"] += len([t for t in keep if t & 0xFFFF >= 0x1000])
