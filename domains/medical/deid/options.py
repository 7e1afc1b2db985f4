"""The profile's options (PS3.15 E.3) as flags, and how the output records them (CID 7050 codes)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

from .table import OPTION_COLUMNS


class MethodCode(NamedTuple):
    """A code of CID 7050 (De-identification Method), scheme DCM."""

    value: str
    meaning: str


BASIC_PROFILE_CODE = MethodCode("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = MethodCode("113101", "Clean Pixel Data Option")
# DeidOptions field -> CID 7050 code (PS3.16).
OPTION_CODES: dict[str, MethodCode] = {
    "clean_graphics": MethodCode("113103", "Clean Graphics Option"),
    "clean_structured_content": MethodCode("113104", "Clean Structured Content Option"),
    "clean_descriptors": MethodCode("113105", "Clean Descriptors Option"),
    "retain_full_dates": MethodCode("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_modified_dates": MethodCode("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": MethodCode("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": MethodCode("113109", "Retain Device Identity Option"),
    "retain_uids": MethodCode("113110", "Retain UIDs Option"),
    "retain_safe_private": MethodCode("113111", "Retain Safe Private Option"),
    "retain_institution_identity": MethodCode("113112", "Retain Institution Identity Option"),
}
BASIC_METHOD_TEXT = "DICOM PS3.15 Annex E Basic Profile (mmapps)"
BurnedInPolicy = Literal["refuse", "write-unverified"]


@dataclass(frozen=True)
class DeidOptions:
    """Which PS3.15 E.3 options apply (all off = the Basic Profile alone).

    Attributes:
        retain_full_dates / retain_modified_dates: E.3.6, mutually exclusive; modified dates are shifted
            back by a per-patient number of days derived from the key (times of day are kept).
        retain_patient_characteristics: E.3.7 (sex, age, size, weight... kept).
        retain_device_identity / retain_institution_identity: E.3.8 / E.3.9.
        retain_uids: E.3.9 (UIDs kept as they are).
        retain_safe_private: E.3.10, private attributes of Table E.3.10-1 kept, all others removed.
        clean_descriptors / clean_structured_content / clean_graphics: E.3.11 / E.3.12 / E.3.13.
        burned_in: ``refuse`` files whose BurnedInAnnotation is YES or absent (default), or
            ``write-unverified``: write them with PatientIdentityRemoved NO (their pixels are not cleaned).
        pseudonymize_patient_id: PatientID becomes a keyed pseudonym (else it is emptied).
    """

    retain_full_dates: bool = False
    retain_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_uids: bool = False
    retain_safe_private: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    burned_in: BurnedInPolicy = "refuse"
    pseudonymize_patient_id: bool = True

    def __post_init__(self) -> None:
        if self.retain_full_dates and self.retain_modified_dates:
            raise ValueError("de-identification options: Retain Longitudinal Temporal Information with Full Dates and with Modified Dates "
                             "exclude each other (PS3.15 E.3.6); choose one of --retain-full-dates / --retain-modified-dates")
        if self.burned_in not in ("refuse", "write-unverified"):
            raise ValueError(f"de-identification option burned_in: {self.burned_in!r}, accepted 'refuse' or 'write-unverified'")

    @property
    def enabled(self) -> frozenset[str]:
        """Names of the table options switched on (keys of `OPTION_COLUMNS`)."""
        return frozenset(f.name for f in fields(self) if f.name in OPTION_COLUMNS and getattr(self, f.name))

    def method_codes(self) -> list[MethodCode]:
        """CID 7050 codes of exactly the profile and options used, in code order."""
        return [BASIC_PROFILE_CODE] + sorted((OPTION_CODES[name] for name in self.enabled), key=lambda c: c.value)

    def method_text(self) -> list[str]:
        """DeidentificationMethod values (LO, VM 1-n): the profile, then each option used."""
        return [BASIC_METHOD_TEXT] + [code.meaning for code in self.method_codes()[1:]]
