"""Opening a DICOM file and deciding whether it is a usable radiograph (before any pixel is decoded).

- Files without the 128-byte preamble and file meta (valid DICOM: PS3.10 only requires them on
  media, and several toolkits write bare datasets) are read when their first bytes are a data
  element of group 0008; the transfer syntax is then the one pydicom detects (implicit / explicit
  VR little endian), written into an in-memory file meta so the pixel decoders can run.
- The modality is ``Modality`` when present; when it is absent, the CR, DX, MG and IO storage SOP
  classes map to CR, DX, MG and IO. *For Processing* SOP classes (raw detector data, not meant for
  display) and ``PresentationIntentType`` FOR PROCESSING are refused either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# SOP classes that are never radiographs (PS3.4 B.5): reports, RT, presentation states, file sets.
_NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.481.": "a radiotherapy (RT) object",
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state",
    "1.2.840.10008.1.3.10": "a DICOMDIR (media file-set directory)",
    "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document (PDF/CDA)",
    "1.2.840.10008.5.1.4.1.1.66": "a raw data / registration / segmentation object",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform (ECG/audio)",
}
_NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "DOC", "ECG", "REG", "SEG"}
# Projection radiography storage SOP classes (PS3.4 B.5) -> modality.
SOP_CLASS_TO_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX",
    "1.2.840.10008.5.1.4.1.1.1.2": "MG",
    "1.2.840.10008.5.1.4.1.1.1.3": "IO",
}
FOR_PROCESSING_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "Digital Intra-Oral X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.13.1.4": "Breast Projection X-Ray Image Storage - For Processing",
}
_EXPLICIT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
                 b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
                 b"UR", b"US", b"UT", b"UV"}


class DicomReadError(ValueError):
    """A DICOM file that cannot be used, with the file, the field and the reason."""


class DegenerateImageError(DicomReadError):
    """An image that is constant or almost all saturated after windowing (a window / bit-depth problem)."""


def fail(path: Path | str, reason: str, kind: type[DicomReadError] = DicomReadError) -> DicomReadError:
    return kind(f"{path}: {reason}")


def _looks_like_bare_dataset(head: bytes) -> bool:
    """True when a file starts with a group 0008 data element (a dataset written without preamble / file meta)."""
    if len(head) < 8 or head[:2] != b"\x08\x00":
        return False
    if head[4:6] in _EXPLICIT_VRS:
        return True
    length = int.from_bytes(head[4:8], "little")
    return length < (1 << 16) or length == 0xFFFFFFFF  # implicit VR: a plausible element length


def open_dataset(path: Path) -> Any:
    """Read the dataset (without the pixels decoded), accepting files without preamble / file meta.

    Raises:
        DicomReadError: not DICOM, or a corrupt / truncated header.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError as err:
            with path.open("rb") as handle:
                head = handle.read(8)
            if not _looks_like_bare_dataset(head):
                raise fail(path, f"not a DICOM file (no 'DICM' preamble and no data set at the start: {err})") from None
            ds = pydicom.dcmread(path, force=True)
            ds.file_meta = ds.get("file_meta") or pydicom.dataset.FileMetaDataset()
            if "TransferSyntaxUID" not in ds.file_meta:
                implicit, little = ds.original_encoding
                if not little:
                    raise fail(path, "a data set without file meta in big endian byte order; accepted without file meta: implicit or explicit VR little endian")
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    except DicomReadError:
        raise
    except Exception as err:  # truncated headers raise EOFError, struct.error, OSError, zlib.error...  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
        raise fail(path, f"corrupt or truncated DICOM header, or a data set not encoded as its transfer syntax {_claimed_syntax(path)} "
                         f"claims ({type(err).__name__}: {err})") from None
    return ds


def _claimed_syntax(path: Path) -> str:
    from pydicom.filereader import read_file_meta_info

    try:
        uid = read_file_meta_info(path).TransferSyntaxUID
        return f"{uid.name} ({uid})"
    except Exception:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
        return "(unreadable file meta)"


def _pixel_data_offset(path: Path) -> int | None:
    """Byte offset of a (7FE0,0010) tag in the file, little or big endian, or None."""
    data = path.read_bytes()
    offsets = [i for i in (data.rfind(b"\xe0\x7f\x10\x00"), data.rfind(b"\x7f\xe0\x00\x10")) if i >= 0]
    return max(offsets) if offsets else None


def sop_class_of(ds: Any) -> str:
    meta = ds.get("file_meta") or {}
    return str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", "") or "")


def resolve_modality(ds: Any, path: Path) -> str:
    """``Modality``, or the modality of the SOP class when the attribute is absent or empty."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality:
        return modality
    sop = sop_class_of(ds)
    if sop in SOP_CLASS_TO_MODALITY:
        return SOP_CLASS_TO_MODALITY[sop]
    raise fail(path, f"Modality is absent and SOPClassUID {sop or '(absent)'} is not a projection radiograph class; "
                     f"accepted without Modality: {', '.join(f'{m} ({uid})' for uid, m in SOP_CLASS_TO_MODALITY.items())}")


def check_is_radiograph(ds: Any, path: Path, allowed_modalities: Sequence[str] | None) -> str:
    """Refuse non-images, For Processing data and modalities outside ``allowed_modalities``; return the modality."""
    sop = sop_class_of(ds)
    for prefix, what in _NON_IMAGE_SOP_PREFIXES.items():
        if sop.startswith(prefix):
            raise fail(path, f"SOPClassUID {sop} is {what}, not an image; accepted: CR / DX image storage")
    if "DirectoryRecordSequence" in ds:
        raise fail(path, "the file is a DICOMDIR (DirectoryRecordSequence present), not an image")
    if sop in FOR_PROCESSING_SOP_CLASSES:
        raise fail(path, f"SOPClassUID {sop} is {FOR_PROCESSING_SOP_CLASSES[sop]}: raw detector data that is not meant "
                         "for display or reading; accepted: the For Presentation image of the same exposure")
    if str(ds.get("PresentationIntentType", "") or "").strip().upper() == "FOR PROCESSING":
        raise fail(path, "PresentationIntentType is 'FOR PROCESSING' (raw detector data); accepted: FOR PRESENTATION images")
    modality = resolve_modality(ds, path)
    if modality in _NON_IMAGE_MODALITIES:
        raise fail(path, f"Modality is {modality!r}, a non-image object; accepted: {', '.join(allowed_modalities or ['any image'])}")
    if allowed_modalities is not None and modality not in {m.upper() for m in allowed_modalities}:
        raise fail(path, f"Modality is {modality!r}; accepted modalities: {', '.join(allowed_modalities)}")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        offset = _pixel_data_offset(path)
        if offset is not None:
            raise fail(path, f"the file holds a PixelData element (7FE0,0010) at byte {offset} that could not be read: the file is "
                             f"truncated, or its transfer syntax {ds.file_meta.get('TransferSyntaxUID', '(absent)')} is wrong")
        raise fail(path, "no PixelData element (7FE0,0010): the object holds no image")
    return modality
