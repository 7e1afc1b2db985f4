"""Resolve the conditional actions of Table E.1-1 (X/Z, X/D, X/Z/D, Z/D, X/Z/U*) by the IOD's requirement type.

PS3.15 Table E.1-1a: the action is X where the attribute is Type 3, Z where it is Type 2, D (or U for a
sequence of UID references) where it is Type 1, so that the output still conforms to its IOD. The
types below are those of PS3.3 for the places where a conditional attribute is Type 1 or 2 in a
composite IOD (the top-level dataset of the SOP classes named, or a named parent sequence); everywhere
else the attribute is Type 3 or its type is not known here, and the strictest action is taken (X, or Z
for Z/D).
"""

from __future__ import annotations

from collections.abc import Callable

from pydicom.dataset import Dataset

_P = "1.2.840.10008.5.1.4.1.1."
ENHANCED_IMAGE_CLASSES = frozenset(_P + s for s in (
    "2.1", "2.2", "4.1", "4.2", "4.3", "4.4", "12.1.1", "12.2.1", "128.1", "128.2", "130", "6.2", "13.1.1", "13.1.2",
    "13.1.3", "13.1.4", "13.1.5", "14.1", "14.2", "30", "66.4", "77.1.6", "77.1.5.7", "77.1.5.8",
))
WAVEFORM_PREFIX = _P + "9."
SR_PREFIX = _P + "88."
PRESENTATION_STATE_PREFIX = _P + "11."
ACQUISITION_CONTEXT_CLASSES = ENHANCED_IMAGE_CLASSES | frozenset(_P + s for s in (
    "1.1", "1.1.1", "1.2", "1.2.1", "1.3", "1.3.1", "77.1.1", "77.1.1.1", "77.1.2", "77.1.2.1", "77.1.3", "77.1.4", "77.1.4.1",
))
PET_IMAGE = _P + "128"
RT_PLAN_CLASSES = frozenset(_P + s for s in ("481.5", "481.8"))
RT_TREATMENT_RECORD_CLASSES = frozenset(_P + s for s in ("481.4", "481.6", "481.7", "481.9"))
RT_TREATMENT_SUMMARY = _P + "481.7"
RT_SERIES_CLASSES = frozenset(_P + "481." + s for s in ("1", "2", "3", "4", "5", "6", "7", "8", "9"))


def _is_sr(sop: str) -> bool:
    return sop.startswith(SR_PREFIX)


def _is_waveform(sop: str) -> bool:
    return sop.startswith(WAVEFORM_PREFIX)


def _original_enhanced(sop: str, ds: Dataset) -> bool:
    image_type = ds.get("ImageType") or [""]
    first = str(image_type[0] if not isinstance(image_type, str) else image_type).upper()
    return sop in ENHANCED_IMAGE_CLASSES and first in ("ORIGINAL", "MIXED")


# tag -> [(condition on (SOP Class UID, top-level dataset), type)], first match wins; top level only.
Rule = Callable[[str, Dataset], bool]
TOP_LEVEL_TYPES: dict[int, list[tuple[Rule, str]]] = {
    0x00080022: [(lambda sop, ds: sop == PET_IMAGE, "2")],  # Acquisition Date: PET Image module
    0x00080032: [(lambda sop, ds: sop == PET_IMAGE, "2")],  # Acquisition Time: PET Image module
    0x0008002A: [(lambda sop, ds: _is_waveform(sop) or _original_enhanced(sop, ds), "1")],  # Acquisition DateTime
    0x00080023: [(lambda sop, ds: _is_sr(sop) or _is_waveform(sop) or sop in ENHANCED_IMAGE_CLASSES, "1"), (lambda sop, ds: True, "2")],
    0x00080033: [(lambda sop, ds: _is_sr(sop) or _is_waveform(sop) or sop in ENHANCED_IMAGE_CLASSES, "1"), (lambda sop, ds: True, "2")],
    0x00181000: [(lambda sop, ds: sop in ENHANCED_IMAGE_CLASSES, "1")],  # Device Serial Number: Enhanced General Equipment
    0x00400555: [(lambda sop, ds: sop in ACQUISITION_CONTEXT_CLASSES or _is_waveform(sop), "2")],  # Acquisition Context module
    0x00102203: [(lambda sop, ds: "PatientSpeciesDescription" in ds or "PatientSpeciesCodeSequence" in ds, "2")],  # 2C: animals
    0x300E0008: [(lambda sop, ds: str(ds.get("ApprovalStatus", "")).upper() in ("APPROVED", "REJECTED"), "2")],  # Approval 2C
    0x300A0006: [(lambda sop, ds: sop in RT_PLAN_CLASSES, "2")],  # RT Plan Date: RT General Plan
    0x300A0007: [(lambda sop, ds: sop in RT_PLAN_CLASSES, "2")],
    0x30080250: [(lambda sop, ds: sop in RT_TREATMENT_RECORD_CLASSES, "2")],  # Treatment Date: RT General Treatment Record
    0x30080251: [(lambda sop, ds: sop in RT_TREATMENT_RECORD_CLASSES, "2")],
    0x30080054: [(lambda sop, ds: sop == RT_TREATMENT_SUMMARY, "2")],  # First Treatment Date
    0x30080056: [(lambda sop, ds: sop == RT_TREATMENT_SUMMARY, "2")],  # Most Recent Treatment Date
    0x00081070: [(lambda sop, ds: sop in RT_SERIES_CLASSES, "2")],  # Operators' Name: RT Series module
    0x00180010: [(lambda sop, ds: True, "2")],  # Contrast/Bolus Agent: Contrast/Bolus module
    0x00700084: [(lambda sop, ds: True, "2")],  # Content Creator's Name: Presentation State Identification
}
# (parent sequence tag, tag) -> type, for conditional attributes inside known sequences.
NESTED_TYPES: dict[tuple[int, int], str] = {
    (0x300A00B0, 0x300A00B2): "2",  # Beam Sequence > Treatment Machine Name (RT Beams)
    (0x300A03A2, 0x300A00B2): "2",  # Ion Beam Sequence > Treatment Machine Name (RT Ion Beams)
    (0x00081115, 0x00081140): "1",  # Referenced Series Sequence > Referenced Image Sequence (presentation states)
    # Derivation Image Sequence > Source Image Sequence: Type 2 in the Derivation Image macro, but the Common
    # Instance Reference module must then list only instances referenced here, so its UIDs are kept replaced (U)
    (0x00089124, 0x00082112): "1",
}


def requirement_type(tag: int, sop_class: str, top: Dataset, parents: tuple[int, ...]) -> str | None:
    """PS3.3 type ("1", "2", "3") of ``tag`` where known here, else None (the caller takes the strictest action).

    Args:
        tag: the attribute.
        sop_class: SOP Class UID of the file.
        top: the top-level dataset (for conditions such as ApprovalStatus).
        parents: tags of the enclosing sequences, outermost first (empty at the top level).
    """
    if parents:
        return NESTED_TYPES.get((parents[-1], int(tag)))
    for condition, kind in TOP_LEVEL_TYPES.get(int(tag), []):
        if condition(sop_class, top):
            return kind
    return None


def resolve_conditional(action: str, kind: str | None) -> str:
    """One of X, Z, D, U for a conditional action given the requirement type (None: the strictest)."""
    choices = action.split("/")
    if kind == "1":
        for pick in ("D", "U*", "Z"):
            if pick in choices:
                return pick.rstrip("*")
    if kind == "2":
        for pick in ("Z", "D"):
            if pick in choices:
                return pick
    return choices[0]
