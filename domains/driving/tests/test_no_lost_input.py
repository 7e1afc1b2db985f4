"""Every frame named by the data root is used or counted with its reason; empty splits stop with exit code 3."""

import shutil

import numpy as np
import pytest
from mmapps_domains.driving.dataset import build_datasets
from mmapps_domains.driving.demo import write_demo_data
from mmapps_domains.driving.splits import read_split_file, write_split_file

from mmapps.config import validate_config
from mmapps.errors import DataError

OPTIONS = {"image_size": [32, 96], "max_points": 3000}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("kitti"), n=8, seed=1)


def cfg_for(root, **data):
    return validate_config({"domain": "driving", "data": {"root": str(root), "options": OPTIONS, **data}})


def copy(demo_root, tmp_path):
    root = tmp_path / "kitti"
    shutil.copytree(demo_root, root)
    return root


def test_listed_frames_without_readable_lidar_are_counted(demo_root, tmp_path):
    root = copy(demo_root, tmp_path)
    lidar = root / "training" / "velodyne"
    train = read_split_file(root / "ImageSets" / "train.txt")
    (lidar / f"{train[0]}.bin").rename(lidar / f"{train[0]}.xyz")  # a suffix the reader does not know
    (lidar / f"{train[1]}.bin").unlink()  # listed, labelled, no LiDAR file
    png = root / "training" / "image_2" / f"{train[2]}.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # truncated camera image
    splits = build_datasets(cfg_for(root))
    reasons = {i.path.rsplit("/", 1)[-1]: i.reason for i in splits.issues.issues}
    assert reasons[train[0]].startswith("unsupported point-cloud suffix") and ".xyz" in reasons[train[0]]
    assert reasons[train[1]].startswith("LiDAR file missing") and "ImageSets/train.txt" in reasons[train[1]]
    assert reasons[train[2]].startswith("camera image unreadable")
    summary = splits.issues.summary()
    assert "3 input(s) skipped" in summary and "LiDAR file missing" in summary
    assert len(splits.train) == len(train) - 3
    with pytest.raises(DataError, match="unsupported point-cloud suffix"):
        build_datasets(cfg_for(root, on_error="stop"))


def test_frames_outside_the_lists_are_counted_not_fatal(demo_root, tmp_path):
    root = copy(demo_root, tmp_path)
    train = read_split_file(root / "ImageSets" / "train.txt")
    write_split_file(root / "ImageSets" / "train.txt", train[1:])
    splits = build_datasets(cfg_for(root, on_error="stop"))
    assert [i.reason for i in splits.issues.issues] == ["not in any ImageSets list: unused"]


def test_openpcdet_test_list_names_testing_frames(demo_root, tmp_path):
    root = copy(demo_root, tmp_path)
    ids = sorted(p.stem for p in (root / "training" / "velodyne").glob("*.bin"))
    write_split_file(root / "ImageSets" / "test.txt", ids)  # OpenPCDet's test.txt: ids of testing/, overlapping training/
    splits = build_datasets(cfg_for(root))
    assert [f.frame_id for f in splits.test.frames] == [f.frame_id for f in splits.val.frames]
    assert "val doubles as test" in splits.info["split_source"]


def test_empty_split_is_an_error_naming_what_fills_it(demo_root, tmp_path):
    root = copy(demo_root, tmp_path)
    write_split_file(root / "ImageSets" / "val.txt", ["999999"])
    with pytest.raises(DataError, match="the val split is empty.*ImageSets/val.txt.*split_fractions") as err:
        build_datasets(cfg_for(root))
    assert err.value.exit_code == 3
    (root / "ImageSets" / "val.txt").unlink()
    (root / "ImageSets" / "train.txt").unlink()
    for path in sorted((root / "training" / "velodyne").glob("*.bin"))[2:]:
        path.unlink()  # two frames: a seeded split cannot give val and test a frame
    with pytest.raises(DataError, match="split is empty"):
        build_datasets(cfg_for(root))


def test_nuscenes_layout_moves_the_calibration_with_the_points(demo_root, tmp_path):
    from dataclasses import replace

    from mmapps_domains.driving.kitti import read_calib, write_calib
    from mmapps_domains.driving.layouts import PRESETS
    from mmapps_domains.driving.points import read_velodyne

    root = copy(demo_root, tmp_path)
    to_model = PRESETS["nuscenes"].file_to_model()
    for path in (root / "training" / "velodyne").glob("*.bin"):
        p = read_velodyne(path)  # rewrite each KITTI scan as a nuScenes .pcd.bin would hold it
        nu = np.stack([-p[:, 1], p[:, 0], p[:, 2] - 0.11, np.round(p[:, 3] * 255), np.zeros(len(p))], 1).astype(np.float32)
        nu.tofile(path)
        calib_path = root / "training" / "calib" / f"{path.stem}.txt"
        calib = read_calib(calib_path)  # and its calibration as mapping that nuScenes frame
        tr = np.vstack([calib.Tr_velo_to_cam, [0, 0, 0, 1]]) @ to_model
        write_calib(calib_path, replace(calib, Tr_velo_to_cam=tr[:3]))
    kitti = build_datasets(cfg_for(demo_root))
    nus = build_datasets(validate_config({"domain": "driving", "data": {"root": str(root), "options": {**OPTIONS, "point_layout": "nuscenes"}}}))
    a, b = kitti.train[0], nus.train[0]
    np.testing.assert_allclose(np.array(b.meta["lidar_to_image"]), np.array(a.meta["lidar_to_image"]), atol=1e-6)
    np.testing.assert_allclose(b.targets["objects"]["boxes"].numpy(), a.targets["objects"]["boxes"].numpy(), atol=1e-3)
    with pytest.raises(DataError, match="point_layout=nuscenes"):
        build_datasets(cfg_for(root, on_error="stop"))
