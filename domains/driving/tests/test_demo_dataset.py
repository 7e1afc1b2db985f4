"""Demo writer (KITTI layout, real files) and the dataset built on it, including bad frames."""

import numpy as np
import pytest
import torch

from mmapps.config import validate_config
from mmapps.data import collate_samples
from mmapps.errors import DataError
from mmapps_domains.driving.dataset import build_datasets
from mmapps_domains.driving.demo import write_demo_data
from mmapps_domains.driving.geometry import boxes_camera_to_lidar, points_in_boxes
from mmapps_domains.driving.kitti import read_calib, read_label
from mmapps_domains.driving.points import read_velodyne

OPTIONS = {"image_size": [32, 96], "max_points": 3000}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("kitti"), n=8, seed=1)


def test_demo_files_are_consistent(demo_root):
    training = demo_root / "training"
    assert sorted(p.name for p in training.iterdir()) == ["calib", "image_2", "label_2", "velodyne"]
    assert len(list((training / "velodyne").glob("*.bin"))) == 8
    labels = read_label(training / "label_2" / "000000.txt")
    calib = read_calib(training / "calib" / "000000.txt")
    points = read_velodyne(training / "velodyne" / "000000.bin")
    objs = [o for o in labels if o.type != "DontCare"]
    assert objs and all(o.type in ("Car", "Pedestrian", "Cyclist") for o in objs)
    cam = torch.tensor([[*o.location, *o.dimensions, o.rotation_y] for o in objs], dtype=torch.float64)
    lidar = boxes_camera_to_lidar(cam, torch.from_numpy(calib.R0_rect), torch.from_numpy(calib.Tr_velo_to_cam))
    inside = points_in_boxes(torch.from_numpy(points).double(), lidar).sum(0)
    visible = [i for i, o in enumerate(objs) if o.occluded == 0 and o.location[2] < 30]
    assert all(inside[i] > 5 for i in visible)  # the LiDAR hits the labelled, visible objects
    assert (np.abs(points[:, 2] + 1.73) < 0.1).mean() > 0.3  # much of the sweep is ground


def cfg_for(root, **data):
    return validate_config({"domain": "driving", "data": {"root": str(root), "options": OPTIONS, **data}})


def test_dataset_samples_and_collate(demo_root):
    splits = build_datasets(cfg_for(demo_root))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 8
    sample = splits.train[0]
    assert sample.inputs["lidar"].shape[1] == 4 and sample.inputs["lidar"].dtype == torch.float32
    assert sample.inputs["camera"].shape == (3, 32, 96)
    objs = sample.targets["objects"]
    assert objs["boxes"].shape[1] == 7 and objs["labels"].shape[0] == objs["boxes"].shape[0]
    assert np.array(sample.meta["lidar_to_image"]).shape == (3, 4)
    batch = collate_samples([splits.train[0], splits.train[1]], {"lidar": "packed", "camera": "fixed"})
    assert batch.inputs["lidar"].offsets.shape == (3,) and batch.inputs["camera"].data.shape == (2, 3, 32, 96)


def test_missing_image_gives_camera_none(demo_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    (root / "training" / "image_2" / "000000.png").unlink()
    splits = build_datasets(cfg_for(root))
    ds = next(d for d in (splits.train, splits.val, splits.test) if any(f.frame_id == "000000" for f in d.frames))
    index = [f.frame_id for f in ds.frames].index("000000")
    assert ds[index].inputs["camera"] is None and ds[index].inputs["lidar"].shape[0] > 0


def test_bad_frames_are_skipped_or_stop(demo_root, tmp_path):
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(demo_root, root)
    shutil.rmtree(root / "ImageSets")  # a seeded split of the 3 good frames (the lists' val frames are all broken)
    training = root / "training"
    (training / "velodyne" / "000001.bin").write_bytes(b"\0" * 30)
    (training / "label_2" / "000002.txt").write_text("Bus 0 0 0 1 2 3 4 1 2 3 4 5 6 0\n")
    calib = (training / "calib" / "000003.txt").read_text().splitlines()
    (training / "calib" / "000003.txt").write_text("\n".join(line for line in calib if not line.startswith("Tr_velo_to_cam")))
    lines = (training / "calib" / "000004.txt").read_text().splitlines()
    p2 = lines[2].split()
    p2[3] = "5000.0"  # principal point far right of the 1242 px image
    lines[2] = " ".join(p2)
    (training / "calib" / "000004.txt").write_text("\n".join(lines) + "\n")
    points = read_velodyne(training / "velodyne" / "000005.bin")
    points[10, 0] = np.inf
    points.tofile(training / "velodyne" / "000005.bin")
    splits = build_datasets(cfg_for(root))
    assert len(splits.issues) == 5
    text = " ".join(str(i) for i in splits.issues.issues)
    assert "not a whole number of" in text and "unknown object type 'Bus'" in text and "Tr_velo_to_cam" in text
    assert "principal point of P2" in text and "NaN/inf" in text
    assert "5 input(s) skipped" in splits.issues.summary()
    assert len(splits.train) + len(splits.val) + len(splits.test) == 3
    with pytest.raises(DataError, match="not a whole number of"):
        build_datasets(cfg_for(root, on_error="stop"))


def test_unlabelled_testing_folder_serves_the_test_split(demo_root, tmp_path):
    import shutil

    root = tmp_path / "kitti"
    shutil.copytree(demo_root, root)
    testing = root / "testing"
    shutil.copytree(root / "training", testing)
    shutil.rmtree(testing / "label_2")  # KITTI's testing/ has no labels
    cfg = validate_config({"domain": "driving", "data": {"root": str(root), "options": {**OPTIONS, "test_folder": "testing"}}})
    splits = build_datasets(cfg)
    assert len(splits.test) == 8
    sample = splits.test[0]
    assert sample.targets["objects"]["boxes"].shape == (0, 7) and sample.inputs["lidar"].shape[0] > 0
