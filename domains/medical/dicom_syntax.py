"""Does the pixel data hold what the transfer syntax claims? (checked before decoding, from the first bytes)

A mislabelled file (a JPEG 2000 stream under a JPEG baseline UID, native bytes under a compressed
UID...) can decode without an error into a wrong image, so the first fragment's signature is
compared with the claim: JPEG and JPEG-LS start with SOI (FFD8) and differ by their SOF marker
(FFF7 is JPEG-LS), JPEG 2000 with SOC + SIZ (FF4F FF51) or a JP2 signature box, RLE with a
64-byte header whose segment count is 1-15.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmapps_domains.medical.dicom_open import fail

_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG_LS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
_RLE = "1.2.840.10008.1.2.5"
_JP2_BOX = b"\x00\x00\x00\x0cjP  "


def _jpeg_family(stream: bytes) -> str:
    """``jpeg`` / ``jpeg-ls`` from the first SOF marker of a JPEG stream (``unknown`` if none is found early)."""
    i = 2
    while i + 4 <= len(stream) and i < 1 << 16:
        if stream[i] != 0xFF:
            return "unknown"
        marker = stream[i + 1]
        if marker == 0xF7:
            return "jpeg-ls"
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return "jpeg"
        i += 2 + int.from_bytes(stream[i + 2 : i + 4], "big")
    return "unknown"


def signature_of(stream: bytes) -> str:
    """What a pixel-data fragment looks like: ``jpeg``, ``jpeg-ls``, ``jpeg2000``, ``rle`` or ``unknown``."""
    if stream[:4] == b"\xff\x4f\xff\x51" or stream[:8] == _JP2_BOX:
        return "jpeg2000"
    if stream[:2] == b"\xff\xd8":
        return _jpeg_family(stream)
    if len(stream) >= 64 and 1 <= int.from_bytes(stream[:4], "little") <= 15:
        return "rle"
    return "unknown"


def check_pixel_data_matches_syntax(ds: Any, path: Path) -> None:
    """Refuse encapsulated pixel data whose first fragment is not what the transfer syntax claims.

    Raises:
        DicomReadError: naming the claim and what the data looks like.
    """
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    expected = "jpeg" if syntax in _JPEG else "jpeg-ls" if syntax in _JPEG_LS else "jpeg2000" if syntax in _J2K else "rle" if syntax == _RLE else None
    if expected is None or "PixelData" not in ds:
        return
    from pydicom.encaps import generate_frames

    raw = ds.PixelData
    name = getattr(ds.file_meta.TransferSyntaxUID, "name", syntax)
    if raw[:4] != b"\xfe\xff\x00\xe0":
        raise fail(path, f"the transfer syntax is {name} ({syntax}), a compressed one, but the pixel data is not encapsulated "
                         "(no item tag FFFE,E000): the file is native data under a wrong transfer syntax UID")
    try:
        first = next(generate_frames(raw, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))
    except Exception as err:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
        raise fail(path, f"encapsulated pixel data could not be split into frames ({type(err).__name__}: {err}); truncated or corrupt") from None
    found = signature_of(first[:4096])
    if found != expected:
        raise fail(path, f"the transfer syntax is {name} ({syntax}) but the pixel data looks like {found} "
                         f"(first bytes {first[:4].hex()}); the file's transfer syntax UID is wrong, so it is not decoded")
