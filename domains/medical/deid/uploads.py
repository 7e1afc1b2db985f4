"""De-identify a served upload in place: the service's ``prepare_upload`` hook for the medical domain.

Runs in the decoder child (`mmapps.serve.decode_worker`) before any reader opens the files, with
the server's de-identification key: PS3.15 Basic Profile with Retain Patient Characteristics,
burned-in text written as unverified (a served image is not checked by a person).
"""

from __future__ import annotations

from pathlib import Path

from mmapps.serve.caps import Refused


def deidentify_upload(root: Path, key_hex: str) -> list[str]:
    """De-identify every DICOM under ``root`` in place; returns the identifier values read before the change.

    Raises:
        Refused: a file is not a DICOM image this de-identifier can read (its message names the
            file and what is accepted, never a tag value).
    """
    from mmapps_domains.medical.deid import DeidKey, DeidOptions, deidentify_dataset
    from mmapps_domains.medical.deid.engine import collect_identifiers
    from mmapps_domains.medical.deid.reading import read_input

    key = DeidKey(bytes.fromhex(key_hex))
    options = DeidOptions(retain_patient_characteristics=True, burned_in="write-unverified")
    identifiers: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ".dicom")):
        result = read_input(path)
        if result.dataset is None:
            raise Refused("bad_dicom", f"DICOM file {path.name}: {result.refused or result.skipped}; accepted: DICOM Part 10 CR/DX images in a transfer syntax pydicom decodes")
        identifiers += collect_identifiers(result.dataset)
        deidentify_dataset(result.dataset, key, options, pixels_verified=False, fallback_label=path.name)
        result.dataset.save_as(path)
    return identifiers
