"""The PLY format's vertex element (ascii, binary little- and big-endian), every property kept.

Covers the headers that plyfile, VTK (``comment`` / ``obj_info`` lines, an empty ``face`` list
element after the vertices), PCL, Open3D and CloudCompare write. Elements before ``vertex`` are
skipped (list properties included).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
          "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _parse_header(raw: bytes, path: Path) -> tuple[str, list[tuple[str, int, list[tuple]]], int]:
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    body = raw.find(b"\n", end) + 1
    fmt, elements = "", []
    for line in raw[:end].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1][2].append((words[4], "list", _type(words[2], path), _type(words[3], path)))
            else:
                elements[-1][2].append((words[2], _type(words[1], path)))
        else:
            raise ValueError(f"{path}: PLY header line {line[:60]!r} not understood")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: PLY format {fmt!r} not understood; accepted ascii, binary_little_endian, binary_big_endian")
    return fmt, elements, body


def _type(name: str, path: Path) -> str:
    if name not in _TYPES:
        raise ValueError(f"{path}: PLY property type {name!r} not understood; accepted {', '.join(sorted(_TYPES))}")
    return _TYPES[name]


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read the ``vertex`` element of a PLY file as {property: (N,) float64}.

    Raises:
        ValueError: no vertex element, a list property in it, data shorter than announced.
    """
    path = Path(path)
    raw = path.read_bytes()
    fmt, elements, pos = _parse_header(raw, path)
    order = ">" if fmt == "binary_big_endian" else "<"
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise ValueError(f"{path}: PLY file has no vertex element (elements: {names})")
    if fmt == "ascii":
        lines = raw[pos:].split(b"\n")
        skip = sum(count for name, count, _ in elements[: names.index("vertex")])
        _, n, props = elements[names.index("vertex")]
        rows = [line.split() for line in lines[skip:skip + n]]
        if len(rows) < n or any(len(r) != len(props) for r in rows):
            raise ValueError(f"{path}: PLY ascii vertex data has {len(rows)} complete lines of {len(props)} values; {n} announced (truncated or list property in vertex)")
        table = np.array(rows, dtype=np.float64).reshape(n, len(props))
        return {p[0]: table[:, k] for k, p in enumerate(props)}
    for name, n, props in elements:
        if any(p[1] == "list" for p in props):
            if name == "vertex":
                raise ValueError(f"{path}: PLY vertex element has a list property; a point cloud has scalar properties only")
            for _ in range(n):  # elements before the vertices with lists: walk them row by row
                for p in props:
                    count = int(np.frombuffer(raw, dtype=order + p[2], count=1, offset=pos)[0])
                    pos += np.dtype(p[2]).itemsize + count * np.dtype(p[3]).itemsize
            continue
        record = np.dtype([(p[0], order + p[1]) for p in props])
        if name == "vertex":
            if len(raw) - pos < n * record.itemsize:
                raise ValueError(f"{path}: PLY vertex data has {len(raw) - pos} bytes; {n} x {record.itemsize} bytes announced (truncated file)")
            table = np.frombuffer(raw, dtype=record, count=n, offset=pos)
            return {p[0]: table[p[0]].astype(np.float64) for p in props}
        pos += n * record.itemsize
    raise AssertionError("unreachable: vertex element checked above")
