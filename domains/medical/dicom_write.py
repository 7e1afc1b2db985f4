"""Write radiograph DICOM files (CR / DX) in any transfer syntax pydicom can encode.

Used by the demo-data generator and by the tests, which write real files in ``tmp_path`` and read
them back through `mmapps_domains.medical.dicom.read_dicom_xray`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"
DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation

# Short names accepted by `write_xray_dicom` -> transfer syntax UID.
TRANSFER_SYNTAXES = {
    "explicit_le": "1.2.840.10008.1.2.1",
    "implicit_le": "1.2.840.10008.1.2",
    "explicit_be": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
}
_COMPRESSED = {"rle", "jpegls", "jpeg2000"}


@dataclass
class XrayTags:
    """Header fields of a written radiograph (identifiers included on purpose: demo de-identification).

    Attributes mirror DICOM keywords; ``window`` is (center, width) or None; ``rescale`` is
    (slope, intercept) or None; ``extra`` holds any other keyword -> value.
    """

    modality: str = "CR"
    photometric: str = "MONOCHROME2"
    bits_stored: int = 12
    pixel_representation: int = 0
    view_position: str = "PA"
    sex: str = "F"
    age: str = "055Y"
    patient_name: str = "Doe^Jane"
    patient_id: str = "PID000"
    birth_date: str = "19700101"
    accession: str = "ACC000"
    institution: str = "General Hospital"
    study_uid: str | None = None
    series_uid: str | None = None
    pixel_spacing: tuple[float, float] | None = (0.139, 0.139)
    window: tuple[float, float] | None = None
    rescale: tuple[float, float] | None = None
    burned_in: str | None = "NO"
    extra: dict[str, Any] = field(default_factory=dict)


def write_xray_dicom(path: str | Path, stored: np.ndarray, tags: XrayTags, syntax: str = "explicit_le") -> Path:
    """Write stored pixel values as a CR / DX file.

    Args:
        path: output file.
        stored: (H, W) (or (F, H, W)) integer stored values within ``tags.bits_stored`` bits.
        tags: header values.
        syntax: key of `TRANSFER_SYNTAXES`.

    Returns:
        The written path.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    if syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer syntax {syntax!r}: accepted {sorted(TRANSFER_SYNTAXES)}")
    signed = tags.pixel_representation == 1
    stored = np.asarray(stored).astype(np.int16 if signed else np.uint16)
    sop_class = DX_SOP_CLASS if tags.modality == "DX" else CR_SOP_CLASS
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES["explicit_le"])
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = tags.study_uid or generate_uid()
    ds.SeriesInstanceUID = tags.series_uid or generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = tags.modality, "CHEST", tags.view_position
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = tags.patient_name, tags.patient_id, tags.birth_date
    ds.PatientSex, ds.PatientAge = tags.sex, tags.age
    ds.AccessionNumber, ds.InstitutionName = tags.accession, tags.institution
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240115", "101500", "Smith^Alan"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    if tags.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    if tags.burned_in is not None:
        ds.BurnedInAnnotation = tags.burned_in
    if tags.pixel_spacing is not None:
        ds.ImagerPixelSpacing = [f"{v:.4f}" for v in tags.pixel_spacing]
    if tags.window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{tags.window[0]:g}", f"{tags.window[1]:g}"
    if tags.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{tags.rescale[0]:g}", f"{tags.rescale[1]:g}", "US"
    for keyword, value in tags.extra.items():
        setattr(ds, keyword, value)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, tags.photometric
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, tags.bits_stored, tags.bits_stored - 1
    ds.PixelRepresentation = tags.pixel_representation
    if syntax in _COMPRESSED:
        ds.PixelData = stored.tobytes()
        ds.compress(TRANSFER_SYNTAXES[syntax])
    elif syntax == "explicit_be":
        ds.file_meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES[syntax])
        ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
    else:
        ds.file_meta.TransferSyntaxUID = UID(TRANSFER_SYNTAXES[syntax])
        ds.PixelData = stored.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_color_dicom(path: str | Path, pixels: np.ndarray, photometric: str, *, jpeg: bytes | None = None,
                      palette: np.ndarray | None = None, modality: str = "CR", extra: dict[str, Any] | None = None) -> Path:
    """Write a colour file the way secondary-capture and toolkit exports do (for the reader's colour tests).

    Args:
        path: output file.
        pixels: ``(H, W, 3)`` uint8 samples (RGB / YBR_FULL, native), or ``(H, W)`` palette indices.
        photometric: RGB, YBR_FULL, YBR_FULL_422 (with ``jpeg``) or PALETTE COLOR (with ``palette``).
        jpeg: a baseline JPEG stream (e.g. written by Pillow) stored as JPEG Baseline 8-bit.
        palette: ``(N, 3)`` uint16 RGB entries for PALETTE COLOR (16-bit LUTs, first mapped index 0).
        modality, extra: header values (``extra`` keyword -> value, e.g. a rescale that must be ignored).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg is not None else ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), modality
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.PhotometricInterpretation, ds.PixelRepresentation = photometric, 0
    if photometric == "PALETTE COLOR":
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
        for colour, column in (("Red", 0), ("Green", 1), ("Blue", 2)):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(palette), 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", np.ascontiguousarray(palette[:, column], dtype="<u2").tobytes())
            ds[f"{colour}PaletteColorLookupTableData"].VR = "OW"
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, 0, 8, 8, 7
        ds.PixelData = encapsulate([jpeg]) if jpeg is not None else np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    ds["PixelData"].VR = "OB"
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
