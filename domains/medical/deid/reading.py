"""Read an input as DICOM: Part 10 files, and valid datasets without preamble or file meta; refuse truncated ones."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


class ReadResult(NamedTuple):
    """A dataset, or why the file is skipped (not DICOM) or refused (DICOM that cannot be used)."""

    dataset: Dataset | None
    skipped: str | None = None
    refused: str | None = None


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A dataset written without preamble: it starts with a group 0002 or 0008 tag (either byte order)."""
    if len(head) < 8:
        return False
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    return little in (0x0002, 0x0008) or big == 0x0008


def read_input(path: Path) -> ReadResult:
    """Read ``path`` without converting values (nothing is decoded before it is checked)."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError as err:
        return ReadResult(None, refused=f"cannot be read ({err.strerror or type(err).__name__})")
    forced = False
    if head[128:132] != b"DICM":
        if not _looks_like_raw_dataset(head):
            return ReadResult(None, skipped="not DICOM")
        forced = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=forced)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, NotImplementedError, AttributeError) as err:
        return ReadResult(None, refused=f"unreadable DICOM ({type(err).__name__})")
    reason = truncation(ds, path)
    if reason:
        return ReadResult(None, refused=reason)
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if not sop_class:
        return ReadResult(None, refused="no SOP Class UID (0008,0016): not a composite instance this profile can de-identify")
    if sop_class == MEDIA_DIRECTORY:
        return ReadResult(None, skipped="DICOMDIR (media directory): it names the input files; rebuild one over the output")
    _ensure_transfer_syntax(ds)
    return ReadResult(ds)


def truncation(ds: Dataset, path: Path) -> str | None:
    """Why ``ds`` (as just read, values still raw) is truncated, or None.

    pydicom reads a short file without complaint: a value cut by the end of file comes back short and
    an element header cut in two is dropped. Each defined-length top-level value must be whole, and
    the last one must end at the end of the file.
    """
    size = Path(path).stat().st_size
    if len(ds) == 0:
        return "truncated: no data element after the file meta information"
    end = None
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
        value = getattr(raw, "value", None)
        if length is None or tell is None or length == 0xFFFFFFFF:
            end = None
            continue
        if isinstance(value, (bytes, bytearray)) and len(value) < length:
            return f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes, the file holds {len(value)}"
        end = tell + length
    if end is not None and str(syntax) != "1.2.840.10008.1.2.1.99" and end < size:
        rest = Path(path).read_bytes()[end:]
        if rest.strip(b"\x00"):
            return f"truncated or corrupt: {len(rest)} byte(s) after the last whole element cannot be parsed"
    if _is_image_class(str(ds.get("SOPClassUID", ""))) and not any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009)):
        return "truncated: an image storage instance without Pixel Data (7FE0,0010)"
    return None


def _is_image_class(sop_class: str) -> bool:
    from pydicom.uid import UID

    return "Image Storage" in UID(sop_class).name if sop_class else False


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """A dataset read without file meta gets one naming the encoding it was read with."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = ds.original_encoding if ds.original_encoding[0] is not None else (True, True)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
