"""KITTI readers and writers on files written here."""

import numpy as np
import pytest

from mmapps_domains.driving.kitti import (
    KITTI_TYPES, Calibration, KittiObject, check_principal_point, read_calib, read_image, read_label,
    write_calib, write_image, write_label,
)
from mmapps_domains.driving.points import read_points, read_velodyne, write_points_open3d, write_velodyne
from mmapps_domains.driving.splits import resolve_splits, seeded_split, write_split_file


def make_calib() -> Calibration:
    p2 = np.array([[721.5, 0, 609.6, 44.9], [0, 721.5, 172.9, 0.2], [0, 0, 1, 0.003]])
    tr = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27]], dtype=float)
    return Calibration(P={f"P{i}": p2 for i in range(4)}, R0_rect=np.eye(3), Tr_velo_to_cam=tr, Tr_imu_to_velo=np.eye(3, 4))


def test_calib_round_trip(tmp_path):
    calib = make_calib()
    back = read_calib(write_calib(tmp_path / "000001.txt", calib))
    assert set(back.P) == {"P0", "P1", "P2", "P3"}
    np.testing.assert_allclose(back.P2, calib.P2)
    np.testing.assert_allclose(back.Tr_velo_to_cam, calib.Tr_velo_to_cam)
    np.testing.assert_allclose(back.Tr_imu_to_velo, np.eye(3, 4))
    np.testing.assert_allclose(back.velo_to_image(), calib.P2 @ np.vstack([calib.Tr_velo_to_cam, [0, 0, 0, 1]]))


def test_calib_missing_key_and_bad_count(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("P2: " + " ".join(["1"] * 12) + "\nR0_rect: " + " ".join(["1"] * 9) + "\n")
    with pytest.raises(ValueError, match="Tr_velo_to_cam"):
        read_calib(path)
    path.write_text("P2: 1 2 3\n")
    with pytest.raises(ValueError, match="P2 has 3 values; expected 12"):
        read_calib(path)


def kitti_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-40, 40, n), rng.uniform(-40, 40, n), rng.uniform(-2.5, 1, n), rng.uniform(0, 1, n)], 1).astype(np.float32)


def test_velodyne_round_trip_and_errors(tmp_path):
    pts = kitti_points(300)
    np.testing.assert_array_equal(read_velodyne(write_velodyne(tmp_path / "a.bin", pts)), pts)
    (tmp_path / "b.bin").write_bytes(pts.tobytes()[:-4])
    with pytest.raises(ValueError, match="not a whole number of points"):
        read_velodyne(tmp_path / "b.bin")
    pts[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        read_velodyne(write_velodyne(tmp_path / "c.bin", pts))
    (tmp_path / "d.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="no points"):
        read_velodyne(tmp_path / "d.bin")


@pytest.mark.parametrize("suffix", [".pcd", ".ply", ".npy"])
def test_other_point_formats_keep_intensity(tmp_path, suffix):
    pts = kitti_points(200, seed=1)
    path = tmp_path / f"f{suffix}"
    if suffix == ".npy":
        np.save(path, pts)
    else:
        write_points_open3d(path, pts)  # open3d as a third-party writer
    np.testing.assert_allclose(read_points(path), pts, atol=1e-5)


def test_labels_all_types_and_scores(tmp_path):
    objs = [KittiObject(t, 0.1, 1, -1.5, (10, 20, 50, 80), (1.5, 1.6, 3.9), (1.0, 1.7, 20.0), 0.3) for t in KITTI_TYPES]
    objs.append(KittiObject("Car", 0, 0, 0.2, (1, 2, 3, 4), (1, 2, 3), (4, 5, 6), 0.1, score=0.87))
    back = read_label(write_label(tmp_path / "l.txt", objs))
    assert [o.type for o in back] == [o.type for o in objs]
    assert back[-1].score == pytest.approx(0.87)
    assert back[0].score is None and back[0].location == (1.0, 1.7, 20.0) and back[0].dimensions == (1.5, 1.6, 3.9)


def test_label_errors(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("Car 0 0 0 1 2 3 4 1 2 3 4 5 6\n")
    with pytest.raises(ValueError, match="15 fields.*found 14"):
        read_label(path)
    path.write_text("Bus 0 0 0 1 2 3 4 1 2 3 4 5 6 0\n")
    with pytest.raises(ValueError, match="unknown object type 'Bus'"):
        read_label(path)
    path.write_text("Car 0 0 0 1 2 3 4 1 nan 3 4 5 6 0\n")
    with pytest.raises(ValueError, match="NaN or inf"):
        read_label(path)
    path.write_text("Car 0 7 0 1 2 3 4 1 2 3 4 5 6 0\n")
    with pytest.raises(ValueError, match="occluded is 7"):
        read_label(path)
    path.write_text("Car 0 0 0 1 2 3 4 -1.5 2 3 4 5 6 0\n")
    with pytest.raises(ValueError, match="dimensions must be > 0"):
        read_label(path)


def test_image_round_trip_and_principal_point(tmp_path):
    img = np.random.default_rng(2).integers(0, 255, size=(32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "i.png", img)), img)
    with pytest.raises(ValueError, match="principal point"):
        check_principal_point(make_calib(), (32, 48), "frame 1")
    check_principal_point(make_calib(), (375, 1242), "frame 1")


def test_splits(tmp_path):
    ids = [f"{i:06d}" for i in range(20)]
    split = seeded_split(ids, (0.6, 0.2, 0.2), seed=3)
    assert sorted(split["train"] + split["val"] + split["test"]) == ids
    assert split == seeded_split(ids, (0.6, 0.2, 0.2), seed=3)
    write_split_file(tmp_path / "ImageSets" / "train.txt", ids[:12])
    write_split_file(tmp_path / "ImageSets" / "val.txt", ids[12:])
    out, source = resolve_splits(tmp_path, ids, (0.6, 0.2, 0.2), 0)
    assert out["train"] == ids[:12] and out["val"] == ids[12:] and out["test"] == ids[12:]
    assert "ImageSets" in source


def test_result_writer_and_folder_evaluation(tmp_path):
    from types import SimpleNamespace

    from mmapps_domains.driving.commands import evaluate_result_files
    from mmapps_domains.driving.predictions import write_kitti_results

    pred = {"name": ["Car"], "score": [0.9], "boxes_camera": [[1.0, 1.7, 20.0, 1.5, 1.6, 3.9, 0.3]], "bbox": [[10.0, 20.0, 50.0, 80.0]], "alpha": [0.25]}
    folder = write_kitti_results({"objects": [SimpleNamespace(sample_id="000007", prediction=pred)]}, tmp_path)
    (obj,) = read_label(folder / "000007.txt")
    assert obj.type == "Car" and obj.score == pytest.approx(0.9) and obj.dimensions == (1.5, 1.6, 3.9) and obj.location == (1.0, 1.7, 20.0)
    labels = tmp_path / "labels"
    write_label(labels / "000007.txt", [KittiObject("Car", 0, 0, 0.25, (10, 20, 50, 80), (1.5, 1.6, 3.9), (1.0, 1.7, 20.0), 0.3)])
    write_label(labels / "000008.txt", [KittiObject("Car", 0, 0, 0.25, (10, 20, 50, 80), (1.5, 1.6, 3.9), (1.0, 1.7, 20.0), 0.3)])
    write_label(folder / "000008.txt", [])  # a frame of the split without detections
    ap = evaluate_result_files(labels, folder, ("Car",))
    # one of two found: a single score threshold (precision 1 at index 0), which R11 counts and R40 skips
    assert ap["num_gt/Car/moderate"] == 2 and ap["bev_ap_r11/Car/moderate"] == pytest.approx(1 / 11) and ap["bev_ap_r40/Car/moderate"] == 0
    write_label(folder / "000009.txt", [])
    with pytest.raises(FileNotFoundError, match="no label file"):
        evaluate_result_files(labels, folder, ("Car",))
