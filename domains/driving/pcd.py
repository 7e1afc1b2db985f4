"""PCL's ``.pcd`` format (v0.5-0.7): ascii, binary and binary_compressed (LZF), every field kept.

Written from the format as PCL writes it: header lines ``FIELDS / SIZE / TYPE / COUNT / WIDTH /
HEIGHT / VIEWPOINT / POINTS / DATA``; binary data little-endian point after point;
binary_compressed as ``uint32 compressed size, uint32 size`` then LZF-compressed data holding one
field after another (structure of arrays) without the ``_`` padding fields. Organised clouds mark
missing returns with NaN x, y, z (PCL's invalid point); those points are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
          ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}


def lzf_decompress(data: bytes, size: int) -> bytes:
    """Decompress an LZF stream (liblzf's format, as used by PCL) to exactly `size` bytes.

    Raises:
        ValueError: a back reference before the start, a truncated stream or a size mismatch.
    """
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            if i + ctrl + 1 > n:
                raise ValueError("LZF literal run past the end of the data (truncated file)")
            out += data[i:i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            if i >= n:
                raise ValueError("LZF stream truncated")
            length += data[i]
            i += 1
        if i >= n:
            raise ValueError("LZF stream truncated")
        start = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        length += 2
        if start < 0:
            raise ValueError("LZF back reference before the start of the data (corrupt file)")
        chunk = out[start:start + length]
        if len(chunk) < length:  # overlapping copy: the reference repeats itself
            chunk = (chunk * (length // len(chunk) + 1))[:length]
        out += chunk
        if len(out) > size:
            break
    if len(out) != size:
        raise ValueError(f"LZF data decompresses to {len(out)} bytes; the header announces {size}")
    return bytes(out)


def _header(raw: bytes, path: Path) -> tuple[dict[str, list[str]], int]:
    fields: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{path}: PCD header without a DATA line")
        line = raw[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        fields[key.upper()] = values
        if key.upper() == "DATA":
            return fields, pos


def read_pcd(path: str | Path) -> dict[str, np.ndarray]:
    """Read every field of a ``.pcd`` as {name: (N,) or (N, count)} float64 (invalid points dropped).

    Raises:
        ValueError: malformed header, unknown TYPE/SIZE, data shorter than announced, bad LZF data.
    """
    path = Path(path)
    raw = path.read_bytes()
    head, start = _header(raw, path)
    try:
        names = head["FIELDS"]
        sizes = [int(v) for v in head["SIZE"]]
        types = head["TYPE"]
        counts = [int(v) for v in head.get("COUNT", ["1"] * len(names))]
        n = int(head["POINTS"][0]) if "POINTS" in head else int(head["WIDTH"][0]) * int(head.get("HEIGHT", ["1"])[0])
        mode = head["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"{path}: PCD header incomplete or not numeric ({err}); expected FIELDS, SIZE, TYPE, COUNT, POINTS and DATA lines") from None
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise ValueError(f"{path}: PCD header has {len(names)} FIELDS but {len(sizes)} SIZE, {len(types)} TYPE, {len(counts)} COUNT values")
    try:
        dtypes = [np.dtype(_TYPES[(t.upper(), s)]) for t, s in zip(types, sizes)]
    except KeyError:
        raise ValueError(f"{path}: PCD field types {types} with sizes {sizes} not understood; accepted F 4/8, I and U 1/2/4/8") from None
    body = raw[start:]
    if mode == "ascii":
        tokens = body.split()
        width = sum(counts)
        if len(tokens) < n * width:
            raise ValueError(f"{path}: PCD ascii data has {len(tokens)} values; POINTS {n} x {width} values announced (truncated file)")
        table = np.array(tokens[: n * width], dtype=np.float64).reshape(n, width)
        cols, k = {}, 0
        for name, count in zip(names, counts):
            cols[name] = table[:, k] if count == 1 else table[:, k:k + count]
            k += count
    elif mode == "binary":
        record = np.dtype([(f"f{k}", dt, (c,)) for k, (dt, c) in enumerate(zip(dtypes, counts))])
        if len(body) < n * record.itemsize:
            raise ValueError(f"{path}: PCD binary data has {len(body)} bytes; POINTS {n} x {record.itemsize} bytes announced (truncated file)")
        table = np.frombuffer(body, dtype=record, count=n)
        cols = {name: _squeeze(table[f"f{k}"]) for k, name in enumerate(names)}
    elif mode == "binary_compressed":
        if len(body) < 8:
            raise ValueError(f"{path}: PCD binary_compressed data has no size words (truncated file)")
        packed, size = (int(v) for v in np.frombuffer(body[:8], dtype="<u4"))
        if len(body) < 8 + packed:
            raise ValueError(f"{path}: PCD binary_compressed data has {len(body) - 8} bytes; {packed} announced (truncated file)")
        kept = [(name, dt, c) for name, dt, c in zip(names, dtypes, counts) if name != "_"]
        expected = n * sum(dt.itemsize * c for _, dt, c in kept)
        if size != expected:
            raise ValueError(f"{path}: PCD binary_compressed size {size} bytes; POINTS {n} of these fields need {expected}")
        try:
            data = lzf_decompress(body[8:8 + packed], size)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        cols, offset = {}, 0
        for name, dt, c in kept:
            cols[name] = _squeeze(np.frombuffer(data, dtype=dt, count=n * c, offset=offset).reshape(n, c))
            offset += n * c * dt.itemsize
    else:
        raise ValueError(f"{path}: PCD DATA {mode!r} not understood; accepted ascii, binary, binary_compressed")
    cols = {name: np.asarray(v, dtype=np.float64) for name, v in cols.items() if name != "_"}
    if all(k in cols for k in ("x", "y", "z")):  # PCL marks a missing return by NaN coordinates
        valid = np.isfinite(cols["x"]) | np.isfinite(cols["y"]) | np.isfinite(cols["z"])
        if not valid.all():
            cols = {name: v[valid] for name, v in cols.items()}
    return cols


def _squeeze(values: np.ndarray) -> np.ndarray:
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
