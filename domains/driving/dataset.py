"""KITTI-layout detection dataset producing `mmapps.data.Sample`s, and ``build_datasets(cfg)``.

Sample layout:
    inputs  {"lidar": float32 (N, 4) x, y, z, intensity (packed),
             "camera": float32 (3, H, W) normalised image at ``data.options.image_size`` (fixed), or None}
    targets {"objects": {"boxes": (M, 7) LiDAR boxes of the trained classes (augmented frame),
                         "labels": (M,) class index, "kitti": the frame's label_2 columns (JSON-able)}}
    meta    {"frame_id", "image_size" [h, w], "calib" {P2, R0_rect, Tr_velo_to_cam},
             "lidar_to_image" (3, 4) augmented LiDAR -> model-image pixels, "augmentation" (4, 4)}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmapps.data import DatasetSplits, IssueLog, Sample
from mmapps_domains.driving.geometry import boxes_camera_to_lidar
from mmapps_domains.driving.frames import FrameFiles, index_frames
from mmapps_domains.driving.kitti import Calibration, objects_to_arrays, read_calib, read_image, read_label
from mmapps_domains.driving.layouts import resolve_layout
from mmapps_domains.driving.options import DrivingDataOptions, parse_options
from mmapps_domains.driving.points import read_points
from mmapps_domains.driving.preprocess import apply_augmentation, crop_points
from mmapps_domains.driving.splits import labelled_test_list, read_image_sets, resolve_splits

__all__ = ["FrameFiles", "KittiDetectionDataset", "build_datasets", "index_frames"]


def _jsonable(anno: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: v.tolist() for k, v in anno.items()}


class KittiDetectionDataset(Dataset):
    """Map-style dataset over validated KITTI frames.

    Args:
        frames: frames to serve.
        options: validated ``data.options``.
        train: apply augmentation.
        seed: base seed of the per-item augmentation RNG (varied by epoch via `set_epoch`).
    """

    def __init__(self, frames: list[FrameFiles], options: DrivingDataOptions, train: bool, seed: int = 0) -> None:
        self.frames = frames
        self.options = options
        self.layout = resolve_layout(options.point_layout)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _camera(self, files: FrameFiles) -> tuple[np.ndarray | None, tuple[int, int] | None]:
        if files.image is None or not self.options.use_camera:
            return None, None
        from PIL import Image

        image = read_image(files.image)
        h, w = self.options.image_size
        return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)), (image.shape[0], image.shape[1])

    def _load(self, index: int) -> tuple[Calibration, torch.Tensor, np.ndarray | None, tuple[int, int], dict[str, np.ndarray]]:
        """Read and crop one frame (cached in memory when ``data.options.cache_frames``)."""
        if index in self._cache:
            return self._cache[index]
        files = self.frames[index]
        opts = self.options
        # the calibration maps the file's LiDAR frame; points come in the model frame
        calib = read_calib(files.calib).with_lidar_transform(self.layout.file_to_model())
        camera, image_size = self._camera(files)
        if image_size is None and files.image is not None:
            from PIL import Image

            with Image.open(files.image) as im:
                image_size = (im.height, im.width)
        if image_size is None:  # no image: assume the principal point is centred
            image_size = (int(round(2 * calib.P2[1, 2])), int(round(2 * calib.P2[0, 2])))
        velo_to_image = torch.from_numpy(calib.velo_to_image())
        points = torch.from_numpy(read_points(files.points, self.layout))
        points = crop_points(points, opts.point_range, velo_to_image if opts.fov_crop else None, image_size if opts.fov_crop else None)
        anno = objects_to_arrays(read_label(files.label) if files.label is not None else [])
        loaded = (calib, points, camera, image_size, anno)
        if opts.cache_frames:
            self._cache[index] = loaded
        return loaded

    def __getitem__(self, index: int) -> Sample:
        files = self.frames[index]
        opts = self.options
        calib, points, image, image_size, anno = self._load(index)
        camera = None if image is None else torch.from_numpy((image.astype(np.float32) / 255.0 - 0.45) / 0.25).permute(2, 0, 1).contiguous()  # (3, H, W)
        velo_to_image = torch.from_numpy(calib.velo_to_image())
        boxes, labels = self._train_boxes(anno, calib)
        matrix = torch.eye(4, dtype=torch.float64)
        if self.train and opts.augment is not None:
            # a pure function of (seed, epoch, index): the same in any DataLoader worker and after a resume
            from mmapps.data.rng import sample_rng

            rng = sample_rng(self.seed, self.epoch, index)
            aug = opts.augment
            points, boxes, matrix = apply_augmentation(points, boxes, bool(aug.flip and rng.random() < 0.5),
                                                       float(rng.uniform(-aug.rotation, aug.rotation)), float(rng.uniform(*aug.scale)))
            inside = (boxes[:, 0] >= opts.point_range[0]) & (boxes[:, 0] < opts.point_range[3]) & (boxes[:, 1] >= opts.point_range[1]) & (boxes[:, 1] < opts.point_range[4])
            boxes, labels = boxes[inside], labels[inside]
        if opts.max_points is not None and points.shape[0] > opts.max_points:
            keep = torch.from_numpy(np.random.default_rng([self.seed, index]).choice(points.shape[0], opts.max_points, replace=False))
            points = points[keep]
        h, w = opts.image_size
        to_model_pixels = torch.diag(torch.tensor([w / image_size[1], h / image_size[0], 1.0], dtype=torch.float64))
        lidar_to_image = to_model_pixels @ velo_to_image @ torch.linalg.inv(matrix)  # (3, 4)
        meta: dict[str, Any] = {
            "frame_id": files.frame_id,
            "image_size": list(image_size),
            "calib": {"P2": calib.P2.tolist(), "R0_rect": calib.R0_rect.tolist(), "Tr_velo_to_cam": calib.Tr_velo_to_cam.tolist()},
            "lidar_to_image": lidar_to_image.tolist(),
            "augmentation": matrix.tolist(),
        }
        targets = {"objects": {"boxes": boxes.float(), "labels": labels, "kitti": _jsonable(anno)}}
        return Sample(sample_id=files.frame_id, group_id=files.frame_id, inputs={"lidar": points.float(), "camera": camera}, targets=targets, meta=meta)

    def _train_boxes(self, anno: dict[str, np.ndarray], calib: Calibration) -> tuple[torch.Tensor, torch.Tensor]:
        class_to_index = {c: i for i, c in enumerate(self.options.classes)}
        keep = np.array([n in class_to_index for n in anno["name"]], dtype=bool)
        if not keep.any():
            return torch.zeros(0, 7, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
        lhw = anno["dimensions"][keep]
        cam = np.concatenate([anno["location"][keep], lhw[:, [1, 2, 0]], anno["rotation_y"][keep, None]], 1)
        boxes = boxes_camera_to_lidar(torch.from_numpy(cam), torch.from_numpy(calib.R0_rect), torch.from_numpy(calib.Tr_velo_to_cam))
        labels = torch.tensor([class_to_index[n] for n in anno["name"][keep]], dtype=torch.long)
        r = self.options.point_range
        inside = (boxes[:, 0] >= r[0]) & (boxes[:, 0] < r[3]) & (boxes[:, 1] >= r[1]) & (boxes[:, 1] < r[4])
        return boxes[inside], labels[inside]


def data_options(cfg: Any) -> DrivingDataOptions:
    return parse_options(DrivingDataOptions, cfg.data.options, "data.options")


def demo_root(cfg: Any) -> Path:
    """The demo data folder for ``cfg`` (written on first use)."""
    from mmapps_domains.driving.demo import write_demo_data

    from mmapps.data.splits import split_seed

    seed = split_seed(cfg)
    folder = Path(cfg.data.demo_dir) if cfg.data.demo_dir else Path.home() / ".cache" / "mmapps" / f"driving-demo-{cfg.data.demo_n}-seed{seed}"
    if not (folder / "ImageSets" / "test.txt").is_file():
        write_demo_data(folder, cfg.data.demo_n, seed)
    return folder


def _wanted(lists: dict[str, list[str]] | None, names: tuple[str, ...]) -> dict[str, str] | None:
    if lists is None:
        return None
    return {i: f"ImageSets/{name}.txt" for name in reversed(names) if name in lists for i in lists[name]}


def _empty_split_error(root: Path, split: str, source: str, n_usable: int, options: DrivingDataOptions, log: IssueLog):
    from mmapps.errors import DataError

    return DataError(
        f"{root}: the {split} split is empty ({source}; {n_usable} usable frame(s) in training/; {log.summary()}). "
        f"Fill it with ImageSets/{split}.txt listing frame ids of training/ (beside train.txt and val.txt), "
        + ("data.options.test_folder=testing for KITTI's testing/ frames, " if split == "test" else "")
        + f"or, without ImageSets, a seeded split of at least 3 usable frames (data.options.split_fractions, now {list(options.split_fractions)})."
    )


def build_datasets(cfg: Any) -> DatasetSplits:
    """Train / val / test datasets from ``cfg.data.root`` (KITTI layout) or the demo data.

    Raises:
        DataError: no usable frame, or an empty train / val / test split (exit code 3).
    """
    options = data_options(cfg)
    layout = resolve_layout(options.point_layout)
    root = Path(cfg.data.root) if cfg.data.root else demo_root(cfg)
    log = IssueLog(on_error=cfg.data.on_error)
    lists = read_image_sets(root)
    names = ("train", "val", "test") if lists is not None and labelled_test_list(lists) else ("train", "val")
    frames = index_frames(root, "training", options, log, layout, _wanted(lists, names))
    if not frames:
        from mmapps.errors import DataError

        raise DataError(f"{root}/training: no usable frame ({log.summary()})")
    by_id = {f.frame_id: f for f in frames}
    from mmapps.data.splits import split_seed

    split_ids, source = resolve_splits(root, list(by_id), options.split_fractions, split_seed(cfg))
    datasets = {name: KittiDetectionDataset([by_id[i] for i in ids], options, train=(name == "train"), seed=cfg.seed) for name, ids in split_ids.items()}
    if options.test_folder == "testing":  # KITTI's unlabelled test frames, e.g. for a benchmark-server submission
        # OpenPCDet's test.txt names testing/ frames; a labelled test list of training/ does not
        names_testing = lists is not None and "test" in lists and not labelled_test_list(lists)
        wanted = {i: "ImageSets/test.txt" for i in lists["test"]} if names_testing else None
        test_frames = index_frames(root, "testing", options, log, layout, wanted)
        datasets["test"] = KittiDetectionDataset(test_frames, options, train=False, seed=cfg.seed)
        split_ids["test"] = [f.frame_id for f in test_frames]
        source += "; test: testing/"
    for name in ("train", "val", "test"):
        if not split_ids[name]:
            raise _empty_split_error(root, name, source, len(frames), options, log)
    split_of_group = {i: name for name, ids in split_ids.items() for i in ids if not (name == "test" and i in split_ids["val"])}
    info = {"root": str(root), "split_source": source, "point_layout": layout.describe(), "classes": list(options.classes), **{f"n_{k}": len(v) for k, v in split_ids.items()}}
    return DatasetSplits(train=datasets["train"], val=datasets["val"], test=datasets["test"], issues=log, split_of_group=split_of_group, info=info)
