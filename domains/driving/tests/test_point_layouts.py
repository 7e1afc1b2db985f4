"""Every layout against every preset, in files written the way their tools write them."""

import numpy as np
import pytest
from mmapps_domains.driving.layouts import PRESETS, resolve_layout
from mmapps_domains.driving.points import read_points

SOURCES = ("kitti", "nuscenes", "waymo", "indoor_xyzrgb")


def columns(source: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A plausible cloud of `source`'s layout: 360-degree vehicle scan (or a room for the indoor cloud)."""
    rng = np.random.default_rng(seed)
    if source == "indoor_xyzrgb":  # x, y, z, r, g, b of an indoor scan (room coordinates, colours 0-255)
        return {"x": rng.uniform(0, 8, n), "y": rng.uniform(0, 6, n), "z": rng.uniform(0, 3, n),
                "red": rng.integers(0, 256, n), "green": rng.integers(0, 256, n), "blue": rng.integers(0, 256, n)}
    cols = {"x": rng.uniform(-60, 60, n), "y": rng.uniform(-60, 60, n), "z": rng.uniform(-2.5, 1.0, n)}
    if source == "kitti":
        cols["intensity"] = rng.uniform(0, 0.99, n)
    elif source == "nuscenes":
        cols |= {"intensity": rng.integers(0, 256, n).astype(float), "ring": rng.integers(0, 32, n).astype(float)}
    else:  # MMDetection3D's Waymo converter: intensity, elongation, range-image index (-1 off the top LiDAR)
        cols |= {"intensity": rng.gamma(1.0, 0.3, n), "elongation": rng.uniform(0, 1.2, n), "index": rng.integers(-1, 339_200, n).astype(float)}
    return cols


def raw(source: str, n: int) -> np.ndarray:
    return np.stack(list(columns(source, n).values()), 1).astype(np.float32)


@pytest.mark.parametrize("n", [960, 1001])  # 960 points: every stride 4/5/6 divides the file size
@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("source", SOURCES)
def test_bin_and_npy_matrix(tmp_path, source, preset, n):
    array = raw(source, n)
    bin_path = tmp_path / "000000.bin"
    array.tofile(bin_path)  # how KITTI, nuScenes and the converters write .bin
    npy_path = tmp_path / "000000.npy"
    np.save(npy_path, array)
    for path in (bin_path, npy_path):
        if source == preset:
            points = read_points(path, PRESETS[preset])
            assert points.shape == (n, 4) and points.dtype == np.float32
            assert 0 <= points[:, 3].min() and points[:, 3].max() <= 1
        else:
            with pytest.raises(ValueError, match=f"does not fit|not a whole number|needs \\(N, {PRESETS[preset].stride}\\)") as err:
                read_points(path, PRESETS[preset])
            message = str(err.value)
            assert str(path) in message
            if source in PRESETS and path.suffix == ".bin":
                assert f"point_layout={source}" in message  # names the preset that fits


def test_presets_move_points_into_the_kitti_frame(tmp_path):
    cols = columns("nuscenes", 200)
    raw("nuscenes", 200).tofile(tmp_path / "a.bin")
    points = read_points(tmp_path / "a.bin", PRESETS["nuscenes"])
    # nuScenes x right, y forward -> KITTI x forward, y left; ground 1.84 m below -> 1.73 m below
    np.testing.assert_allclose(points[:, 0], cols["y"], atol=1e-4)
    np.testing.assert_allclose(points[:, 1], -cols["x"], atol=1e-4)
    np.testing.assert_allclose(points[:, 2], cols["z"] + 0.11, atol=1e-4)
    np.testing.assert_allclose(points[:, 3], cols["intensity"] / 255, atol=1e-6)
    waymo = columns("waymo", 200)
    raw("waymo", 200).tofile(tmp_path / "w.bin")
    points = read_points(tmp_path / "w.bin", PRESETS["waymo"])
    np.testing.assert_allclose(points[:, 2], waymo["z"] - 1.73, atol=1e-4)
    np.testing.assert_allclose(points[:, 3], np.tanh(waymo["intensity"]), atol=1e-6)


def test_user_given_fields(tmp_path):
    cols = columns("kitti", 300)
    table = np.stack([cols["x"], cols["y"], cols["z"], cols["intensity"] * 255, np.arange(300.0)], 1).astype(np.float32)
    table.tofile(tmp_path / "a.bin")
    layout = resolve_layout({"fields": ["x", "y", "z", "intensity", "t"], "intensity_max": 255})
    assert layout.stride == 5
    np.testing.assert_allclose(read_points(tmp_path / "a.bin", layout)[:, 3], cols["intensity"], atol=1e-5)
    table[:, :3].copy().tofile(tmp_path / "xyz.bin")
    points = read_points(tmp_path / "xyz.bin", resolve_layout({"fields": ["x", "y", "z"]}))
    assert (points[:, 3] == 0).all()
    with pytest.raises(ValueError, match="x, y and z"):
        resolve_layout({"fields": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="not a preset"):
        resolve_layout("velodyne")
