"""PCD / PLY / LAS files written as PCL, plyfile, VTK, open3d and laspy write them, read through the layouts."""

import numpy as np
import pytest
from mmapps_domains.driving.layouts import PRESETS
from mmapps_domains.driving.pcd import lzf_decompress
from mmapps_domains.driving.points import read_points, write_points_open3d

N = 300


def cloud(intensity_max: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-40, 40, N), rng.uniform(-40, 40, N), rng.uniform(-2.5, 1, N), rng.uniform(0, intensity_max, N)], 1).astype(np.float32)


def lzf_compress(data: bytes) -> bytes:
    """A greedy LZF encoder (liblzf's stream format) with back references, for writing PCL's binary_compressed."""
    out, literal, i, table = bytearray(), bytearray(), 0, {}

    def flush():
        for k in range(0, len(literal), 32):
            chunk = literal[k:k + 32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        literal.clear()

    while i < len(data):
        key = data[i:i + 3]
        ref = table.get(key) if len(key) == 3 else None
        table[key] = i
        if ref is not None and i - ref - 1 < 8192:
            length = 3
            while i + length < len(data) and length < 264 and data[ref + length] == data[i + length]:
                length += 1
            flush()
            off, n = i - ref - 1, length - 2
            if n < 7:
                out.append((n << 5) | (off >> 8))
            else:
                out.extend([(7 << 5) | (off >> 8), n - 7])
            out.append(off & 0xFF)
            i += length
        else:
            literal.append(data[i])
            i += 1
    flush()
    return bytes(out)


def pcl_header(fields, sizes, types, n, data, height=1):
    """The header PCL's PCDWriter writes (generateHeader)."""
    return ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
            f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\nTYPE {' '.join(types)}\nCOUNT {' '.join('1' for _ in fields)}\n"
            f"WIDTH {n // height}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode()


def write_pcl(path, pts, mode, ring=None):
    fields, sizes, types = ["x", "y", "z", "intensity"], [4, 4, 4, 4], ["F", "F", "F", "F"]
    cols = [pts[:, k].astype("<f4") for k in range(4)]
    if ring is not None:
        fields, sizes, types = fields + ["ring"], sizes + [2], types + ["U"]
        cols.append(ring.astype("<u2"))
    head = pcl_header(fields, sizes, types, len(pts), mode)
    if mode == "ascii":
        body = "".join(" ".join(f"{c[i]:.8g}" if c.dtype.kind == "f" else str(c[i]) for c in cols) + "\n" for i in range(len(pts))).encode()
    elif mode == "binary":
        record = np.zeros(len(pts), dtype=[(f, c.dtype) for f, c in zip(fields, cols)])
        for f, c in zip(fields, cols):
            record[f] = c
        body = record.tobytes()
    else:  # binary_compressed: fields one after another, LZF-compressed, sizes first
        plain = b"".join(c.tobytes() for c in cols)
        packed = lzf_compress(plain)
        body = np.array([len(packed), len(plain)], dtype="<u4").tobytes() + packed
    path.write_bytes(head + body)
    return path


def test_lzf_round_trip_with_back_references():
    data = bytes(range(50)) * 40 + b"\0" * 500
    packed = lzf_compress(data)
    assert len(packed) < len(data) / 4
    assert lzf_decompress(packed, len(data)) == data
    with pytest.raises(ValueError, match="announces"):
        lzf_decompress(packed, len(data) + 1)


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_pcl_pcd_every_data_mode(tmp_path, mode):
    pts = cloud()
    np.testing.assert_allclose(read_points(write_pcl(tmp_path / "a.pcd", pts, mode)), pts, atol=1e-5)
    # a nuScenes-scale cloud with a ring field: refused as KITTI, read as nuScenes
    loud = cloud(255.0)
    path = write_pcl(tmp_path / "n.pcd", np.round(loud), mode, ring=np.arange(N) % 32)
    with pytest.raises(ValueError, match="intensity.*preset 'nuscenes' accepts that scale"):
        read_points(path, PRESETS["kitti"])
    points = read_points(path, PRESETS["nuscenes"])
    np.testing.assert_allclose(points[:, 3], np.round(loud)[:, 3] / 255, atol=1e-6)


def test_open3d_binary_compressed_and_organised_nan_points(tmp_path):
    pts = cloud(seed=3)
    np.testing.assert_allclose(read_points(write_points_open3d(tmp_path / "o.pcd", pts, compressed=True)), pts, atol=1e-6)
    organised = pts.copy()
    organised[::7, :3] = np.nan  # PCL's invalid points of an organised cloud
    path = write_pcl(tmp_path / "org.pcd", organised, "binary")
    assert read_points(path).shape[0] == N - len(range(0, N, 7))
    truncated = tmp_path / "t.pcd"
    truncated.write_bytes(write_pcl(tmp_path / "full.pcd", pts, "binary").read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_points(truncated)


@pytest.mark.parametrize("text", [True, False])
def test_plyfile_ply(tmp_path, text):
    from plyfile import PlyData, PlyElement

    pts = cloud(seed=1)
    vertex = np.zeros(N, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"), ("ring", "u2")])
    for k, name in enumerate(("x", "y", "z", "intensity")):
        vertex[name] = pts[:, k]
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(tmp_path / "a.ply"))
    np.testing.assert_allclose(read_points(tmp_path / "a.ply"), pts, atol=1e-5)
    rgb = np.zeros(N, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(rgb, "vertex")], text=text).write(str(tmp_path / "rgb.ply"))
    with pytest.raises(ValueError, match="no intensity field.*red, green, blue"):
        read_points(tmp_path / "rgb.ply")


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_vtk_style_ply(tmp_path, fmt):
    """vtkPLYWriter: comment and obj_info lines, float vertices, then an empty face list element."""
    pts = cloud(seed=2)
    head = (f"ply\nformat {fmt} 1.0\ncomment VTK generated PLY File\nobj_info vtkPolyData points and polygons: vtk4.0\n"
            f"element vertex {N}\nproperty float x\nproperty float y\nproperty float z\nproperty float intensity\n"
            "element face 0\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if fmt == "ascii":
        body = "".join(" ".join(f"{v:.7g}" for v in row) + "\n" for row in pts).encode()
    else:
        body = pts.astype(">f4" if fmt == "binary_big_endian" else "<f4").tobytes()
    (tmp_path / "v.ply").write_bytes(head + body)
    np.testing.assert_allclose(read_points(tmp_path / "v.ply"), pts, atol=1e-5)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_laspy_las_and_laz(tmp_path, suffix):
    import laspy

    pts = cloud(seed=4)
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales, header.offsets = np.array([0.001, 0.001, 0.001]), np.zeros(3)
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    las.intensity = np.round(pts[:, 3] * 65535).astype(np.uint16)
    las.write(str(tmp_path / f"a{suffix}"))
    points = read_points(tmp_path / f"a{suffix}")
    np.testing.assert_allclose(points[:, :3], pts[:, :3], atol=1e-3)
    np.testing.assert_allclose(points[:, 3], pts[:, 3], atol=1e-4)
    # aerial survey LiDAR is georeferenced (UTM metres): refused, not predicted on
    header.offsets = np.array([500000.0, 5400000.0, 0.0])
    geo = laspy.LasData(header)
    geo.x, geo.y, geo.z = pts[:, 0] + 500000, pts[:, 1] + 5400000, pts[:, 2] + 300
    geo.intensity = las.intensity
    geo.write(str(tmp_path / f"geo{suffix}"))
    with pytest.raises(ValueError, match="georeferenced"):
        read_points(tmp_path / f"geo{suffix}")
