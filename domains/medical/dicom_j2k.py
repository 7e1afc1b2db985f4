"""JPEG 2000 decoded at a reduced resolution level when the caller only needs a small image.

A JPEG 2000 codestream holds its wavelet resolution levels separately: decoding level ``r``
gives the image at ``ceil(size / 2**r)`` (the low-pass band, an anti-aliased downsample) for a
fraction of the full decode. The level is the highest that keeps the longest side at least
``2 * target`` (so the final area resize still averages >= 2x2 pixels) and that the codestream
has (its COD segment's decomposition count). pylibjpeg-openjpeg exposes no reduce option, so the
decode goes through Pillow's OpenJPEG binding (``Image.reduce``), which rounds the reduced size
differently from OpenJPEG for odd sizes; the size is set to OpenJPEG's ``ceil`` here. Only
single-sample unsigned codestreams take this path; anything else (or any Pillow failure) returns
None and the caller decodes in full.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import numpy as np

_J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}


class CodestreamInfo(dict):
    """``rows``, ``columns``, ``levels`` (decomposition count), ``precision``, ``signed``, ``components``."""


def read_codestream_info(stream: bytes) -> CodestreamInfo | None:
    """SIZ and COD of a J2K codestream's main header (None when they are not found)."""
    if stream[:4] != b"\xff\x4f\xff\x51" or len(stream) < 42:
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">4I", stream[8:24])
    components = struct.unpack(">H", stream[40:42])[0]
    ssiz = stream[42]
    info = CodestreamInfo(rows=ysiz - yo, columns=xsiz - xo, precision=(ssiz & 0x7F) + 1, signed=bool(ssiz & 0x80),
                          components=components, levels=None)
    i = 4 + struct.unpack(">H", stream[4:6])[0]  # after SIZ (marker at 2, Lsiz at 4)
    while i + 4 <= len(stream):
        marker, length = struct.unpack(">HH", stream[i : i + 4])
        if marker == 0xFF52:  # COD: Scod, SGcod (4 bytes), then the decomposition count
            info["levels"] = stream[i + 9]
        if marker in (0xFF90, 0xFF93):  # SOT / SOD: the main header is over
            break
        if marker == 0xFF53:  # a component's own COD (COC): keep the smallest level count
            count = stream[i + 4 + (2 if components >= 257 else 1) + 1]
            info["levels"] = min(info["levels"] if info["levels"] is not None else count, count)
        i += 2 + length
    return info if info["levels"] is not None else None


def choose_level(rows: int, columns: int, levels: int, target: int) -> int:
    """The highest level whose longest side is still >= 2 * target (0: decode in full)."""
    level = 0
    while level < levels and math.ceil(max(rows, columns) / 2 ** (level + 1)) >= 2 * target:
        level += 1
    return level


def decode_reduced(ds: Any, frame: bytes, target: int) -> tuple[np.ndarray, int] | None:
    """Decode frame ``frame`` at the reduced level for ``target`` -> (stored values, level), or None.

    The values are the codestream's samples (Pillow's 16-bit widening undone), so the file's
    grayscale lookup table applies to them unchanged.
    """
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in _J2K_SYNTAXES:
        return None
    info = read_codestream_info(frame)
    if info is None or info["components"] != 1 or info["signed"] or info["precision"] > 16:
        return None
    level = choose_level(info["rows"], info["columns"], info["levels"], target)
    if level == 0:
        return None
    try:
        from PIL import Image, ImageFile

        image = Image.open(io.BytesIO(frame))
        image.reduce = level
        rows, columns = math.ceil(info["rows"] / 2**level), math.ceil(info["columns"] / 2**level)
        tile = image.tile[0]
        args = (tile[3][0], level, image.layers, tile[3][3], tile[3][4])
        image._size = (columns, rows)  # OpenJPEG's ceil, where Pillow would round
        image.tile = [ImageFile._Tile(tile[0], (0, 0, columns, rows), tile[2], args)]
        ImageFile.ImageFile.load(image)
        arr = np.asarray(image)
    except Exception:  # noqa: BLE001 - any failure falls back to the full decode
        return None
    if arr.shape != (rows, columns):
        return None
    if arr.dtype == np.uint16 and info["precision"] < 16 and image.mode.startswith("I;16"):
        arr = arr >> np.uint16(16 - info["precision"])  # Pillow scales samples up to 16 bits
    return np.ascontiguousarray(arr), level
