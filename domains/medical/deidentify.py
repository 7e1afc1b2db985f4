"""De-identification of DICOM files: the Basic Application Level Confidentiality Profile (DICOM PS3.15 Annex E).

Actions per attribute follow Table E.1-1 (Basic Profile column) for the attributes a CR / DX
export carries: ``X`` remove, ``Z`` empty (keep the element with a zero-length value), ``D``
replace with a dummy value, ``U`` replace a UID with a new one, consistently for the whole run (so
a study's images stay one study). UIDs defined by DICOM itself (``1.2.840.10008.*``: SOP Class,
Transfer Syntax, coding schemes) are never changed. Private tags are removed. Sequences are
processed recursively. ``PatientIdentityRemoved`` is set to YES and the method is recorded in
``DeidentificationMethod`` and ``DeidentificationMethodCodeSequence`` (DCM 113100, and 113108
with the Retain Patient Characteristics Option).

Identifiers burned into the pixels are not removed: files whose ``BurnedInAnnotation`` is YES or
absent are flagged in the summary.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# keyword -> action (Table E.1-1, Basic Profile).
BASIC_PROFILE: dict[str, str] = {
    "AccessionNumber": "Z", "AcquisitionDate": "X", "AcquisitionDateTime": "X", "AcquisitionTime": "X",
    "AdditionalPatientHistory": "X", "AdmittingDiagnosesDescription": "X", "Allergies": "X", "BranchOfService": "X",
    "ContentCreatorName": "Z", "ContentDate": "Z", "ContentTime": "Z", "CountryOfResidence": "X",
    "DerivationDescription": "X", "DeviceSerialNumber": "X", "EthnicGroup": "X", "ImageComments": "X",
    "InstanceCreationDate": "X", "InstanceCreationTime": "X", "InstitutionAddress": "X", "InstitutionName": "X",
    "InstitutionalDepartmentName": "X", "IssuerOfPatientID": "X", "MedicalAlerts": "X", "MedicalRecordLocator": "X",
    "MilitaryRank": "X", "NameOfPhysiciansReadingStudy": "X", "Occupation": "X", "OperatorsName": "X",
    "OtherPatientIDs": "X", "OtherPatientIDsSequence": "X", "OtherPatientNames": "X", "OverlayComments": "X",
    "PatientAddress": "X", "PatientAge": "X", "PatientBirthDate": "Z", "PatientBirthName": "X", "PatientBirthTime": "X",
    "PatientComments": "X", "PatientID": "Z", "PatientMotherBirthName": "X", "PatientName": "Z",
    "PatientReligiousPreference": "X", "PatientSex": "Z", "PatientSize": "X", "PatientTelephoneNumbers": "X",
    "PatientWeight": "X", "PerformedProcedureStepDescription": "X", "PerformedProcedureStepID": "X",
    "PerformedProcedureStepStartDate": "X", "PerformedProcedureStepStartTime": "X", "PerformingPhysicianName": "X",
    "PhysiciansOfRecord": "X", "PregnancyStatus": "X", "ProtocolName": "X", "ReferringPhysicianAddress": "X",
    "ReferringPhysicianName": "Z", "ReferringPhysicianTelephoneNumbers": "X", "RegionOfResidence": "X",
    "RequestAttributesSequence": "X", "RequestedProcedureDescription": "X", "RequestedProcedureID": "X",
    "RequestingPhysician": "X", "ScheduledProcedureStepID": "X", "SeriesDate": "X", "SeriesDescription": "X",
    "SeriesTime": "X", "SmokingStatus": "X", "StationName": "X", "StudyDate": "Z", "StudyDescription": "X",
    "StudyID": "Z", "StudyTime": "Z", "VerifyingObserverName": "D", "PatientState": "X", "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X", "CurrentPatientLocation": "X", "PatientInsurancePlanCodeSequence": "X",
    "ReferencedPatientSequence": "X", "ReferencedStudySequence": "X", "ReasonForStudy": "X", "RequestedContrastAgent": "X",
}
# Retain Patient Characteristics Option (PS3.15 E.3.7): these are kept.
PATIENT_CHARACTERISTICS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup", "SmokingStatus", "PregnancyStatus")
METHOD = "PS3.15 Annex E Basic Profile (mmapps)"  # LO: at most 64 characters


@dataclass
class DeidSummary:
    """What was changed, over all files."""

    files: int = 0
    actions: Counter = field(default_factory=Counter)
    burned_in_flagged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.files} file(s) de-identified (DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile)"]
        out += [f"  {action}: {count}" for action, count in sorted(self.actions.items())]
        if self.burned_in_flagged:
            out.append(f"  WARNING: {len(self.burned_in_flagged)} file(s) have BurnedInAnnotation YES or absent; identifiers in the pixels are NOT removed:")
            out += [f"    {p}" for p in self.burned_in_flagged[:20]] + ([f"    ... and {len(self.burned_in_flagged) - 20} more"] if len(self.burned_in_flagged) > 20 else [])
        out += [f"  FAILED {p}" for p in self.failed]
        return out


class UidMapper:
    """Old UID -> new ``2.25.<int>`` UID, the same for the same old UID within one run (salted, not reversible)."""

    def __init__(self, salt: bytes | None = None) -> None:
        self.salt = salt if salt is not None else secrets.token_bytes(16)
        self.mapping: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        if uid not in self.mapping:
            digest = hashlib.sha256(self.salt + uid.encode()).digest()
            self.mapping[uid] = "2.25." + str(int.from_bytes(digest[:16], "big"))
        return self.mapping[uid]


def _apply(ds, uids: UidMapper, keep: set[str], counts: Counter) -> None:
    for elem in list(ds):
        keyword = elem.keyword
        if elem.VR == "SQ" and keyword not in BASIC_PROFILE:
            for item in elem.value:
                _apply(item, uids, keep, counts)
            continue
        action = None if keyword in keep else BASIC_PROFILE.get(keyword)
        if action == "X":
            del ds[elem.tag]
            counts["removed"] += 1
        elif action == "Z":
            elem.value = ""
            counts["emptied"] += 1
        elif action == "D":
            elem.value = "ANONYMIZED" if elem.VR in ("PN", "LO", "SH", "LT", "ST") else ""
            counts["replaced"] += 1
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [v if str(v).startswith("1.2.840.10008.") else uids(str(v)) for v in values]
            if new != list(values):
                elem.value = new if elem.VM > 1 else new[0]
                counts["uids remapped"] += 1


def deidentify_dataset(ds, uids: UidMapper, retain_patient_characteristics: bool = False) -> Counter:
    """De-identify a pydicom dataset in place; returns the action counts."""
    from pydicom.dataset import Dataset

    counts: Counter = Counter()
    before = len(ds)
    ds.remove_private_tags()
    counts["private tags removed"] += before - len(ds)
    keep = set(PATIENT_CHARACTERISTICS) if retain_patient_characteristics else set()
    _apply(ds, uids, keep, counts)
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD + (" + Retain Patient Chars" if retain_patient_characteristics else "")
    codes = []
    for value, meaning in [("113100", "Basic Application Confidentiality Profile")] + ([("113108", "Retain Patient Characteristics Option")] if retain_patient_characteristics else []):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    return counts


def _inputs(source: Path) -> Iterable[tuple[Path, Path]]:
    if source.is_file():
        yield source, Path(source.name)
        return
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        yield path, path.relative_to(source)


def deidentify_tree(source: Path, out: Path, retain_patient_characteristics: bool = False, salt: bytes | None = None) -> DeidSummary:
    """De-identify one DICOM file or every DICOM file under a folder into ``out`` (same relative paths).

    Args:
        source: file or folder; non-DICOM files are skipped.
        out: output folder (created).
        retain_patient_characteristics: keep sex, age, size, weight (PS3.15 E.3.7 option).
        salt: UID-remapping salt (random by default; give one to reproduce a mapping).

    Returns:
        `DeidSummary`.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder to de-identify")
    uids, summary = UidMapper(salt), DeidSummary()
    for path, rel in _inputs(source):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError):
            continue  # not DICOM: not copied
        try:
            burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
            summary.actions.update(deidentify_dataset(ds, uids, retain_patient_characteristics))
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target)
        except Exception as err:  # one bad file must not stop the batch
            summary.failed.append(f"{rel}: {type(err).__name__}: {err}")
            continue
        summary.files += 1
        if burned != "NO":
            summary.burned_in_flagged.append(f"{rel} (BurnedInAnnotation {'absent' if not burned else burned})")
    return summary
