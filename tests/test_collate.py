import pytest
import torch

from mmapps.data import Sample, collate_samples


def _samples():
    return [
        Sample("a", "p1", {"img": torch.ones(2, 1, 4, 4), "pts": torch.ones(3, 4), "note": "x", "tab": torch.tensor([1.0, 2.0])}, {"y": torch.tensor([1.0, 0.0]), "boxes": [1, 2]}),
        Sample("b", "p1", {"img": None, "pts": torch.full((5, 4), 2.0), "note": None, "tab": None}, {"y": torch.tensor([0.0, float("nan")]), "boxes": []}),
        Sample("c", "p2", {"img": torch.full((1, 1, 4, 4), 3.0), "pts": None, "note": "z", "tab": torch.tensor([3.0, 4.0])}, {"y": torch.tensor([1.0, 1.0]), "boxes": [3]}),
    ]


def test_layouts_and_presence():
    batch = collate_samples(_samples(), {"img": "padded", "pts": "packed", "note": "text", "tab": "fixed"})
    img = batch.inputs["img"]
    assert img.data.shape == (3, 2, 1, 4, 4)
    assert img.mask.tolist() == [[True, True], [False, False], [True, False]]
    assert img.present.tolist() == [True, False, True]
    assert float(img.data[2, 1].abs().sum()) == 0.0  # padding is zero
    pts = batch.inputs["pts"]
    assert pts.data.shape == (8, 4) and pts.offsets.tolist() == [0, 3, 8, 8]
    assert pts.present.tolist() == [True, True, False]
    assert batch.inputs["note"].data == ["x", "", "z"]
    assert batch.inputs["tab"].data.shape == (3, 2) and batch.inputs["tab"].present.tolist() == [True, False, True]
    assert batch.targets["y"].shape == (3, 2) and torch.isnan(batch.targets["y"][1, 1])
    assert batch.targets["boxes"] == [[1, 2], [], [3]]  # ragged targets stay lists
    assert batch.sample_ids == ["a", "b", "c"] and batch.group_ids == ["p1", "p1", "p2"]


def test_modality_absent_in_whole_batch_has_no_data():
    batch = collate_samples([Sample("a", "g", {"img": None}), Sample("b", "g", {"img": None})], {"img": "fixed"})
    assert batch.inputs["img"].data is None and batch.inputs["img"].present.tolist() == [False, False]


def test_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout"):
        collate_samples([Sample("a", "g", {"img": torch.ones(1)})], {"img": "ragged"})
