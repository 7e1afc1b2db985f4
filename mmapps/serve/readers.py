"""Decoder-side readers for uploads that ``build_datasets`` cannot read alone (they run in the decoder child).

``driving_frames(cfg, root)``: KITTI ``testing/`` frames (unlabelled, no split lists needed),
read by the driving domain's own frame index and dataset, exactly as its ``test_folder=testing``
option reads them. Each reader has the signature ``(cfg, root) -> list[Sample]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def driving_frames(cfg: Any, root: Path) -> list[Any]:
    from mmapps_domains.driving.dataset import (
        KittiDetectionDataset,
        data_options,
        index_frames,
    )
    from mmapps_domains.driving.layouts import resolve_layout

    from mmapps.data import IssueLog

    options = data_options(cfg)
    frames = index_frames(Path(root), "testing", options, IssueLog(on_error="stop"), resolve_layout(options.point_layout))
    dataset = KittiDetectionDataset(frames, options, train=False, seed=cfg.seed)
    return [dataset[i] for i in range(len(dataset))]
