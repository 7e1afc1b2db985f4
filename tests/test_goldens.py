"""Hand-checkable goldens: identity encoders with concat and late fusion, masked pooling."""

import torch
from torch import nn

from mmapps.data.sample import Batch, ModalityBatch
from mmapps.models.build import register_core_parts
from mmapps.models.pooling import masked_mean, segment_max
from mmapps.registry import ENCODERS, FUSIONS

register_core_parts()


def _batch() -> Batch:
    a = ModalityBatch(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([True, False]))
    b = ModalityBatch(torch.tensor([[5.0], [6.0]]), torch.tensor([True, True]))
    return Batch({"a": a, "b": b}, {}, ["x", "y"], ["g", "g"], [{}, {}])


def test_concat_fusion_input_is_the_literal_concatenation_with_presence_flags():
    encoders = nn.ModuleDict({"a": ENCODERS.get("identity")(2), "b": ENCODERS.get("identity")(1)})
    fusion = FUSIONS.get("concat")({"a": 2, "b": 1}, dim=4)
    seen = {}
    fusion.mlp[0].register_forward_pre_hook(lambda mod, args: seen.update(x=args[0].detach()))
    batch = _batch()
    features = {m: encoders[m](batch.inputs[m]) for m in ("a", "b")}
    fusion(features, {m: batch.inputs[m].present for m in ("a", "b")})
    expected = torch.tensor([[1.0, 2.0, 5.0, 1.0, 1.0], [0.0, 0.0, 6.0, 0.0, 1.0]])  # [a * p_a, b * p_b, p_a, p_b]
    assert torch.equal(seen["x"], expected)


def test_late_fusion_averages_present_predictions_only():
    fusion = FUSIONS.get("late")({"a": 1, "b": 1}, dim=1)  # weights start equal (softmax of zeros)
    predictions = {"a": torch.tensor([[2.0], [100.0]]), "b": torch.tensor([[4.0], [8.0]])}
    present = {"a": torch.tensor([True, False]), "b": torch.tensor([True, True])}
    out = fusion(predictions, present)
    assert torch.allclose(out, torch.tensor([[3.0], [8.0]]))
    with torch.no_grad():
        fusion.weight_logits.copy_(torch.log(torch.tensor([3.0, 1.0])))  # a: 0.75, b: 0.25
    assert torch.allclose(fusion(predictions, present), torch.tensor([[2.5], [8.0]]))


def test_masked_mean_and_segment_max():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(masked_mean(x, mask), torch.tensor([[2.0], [0.0]]))
    values = torch.tensor([[1.0, -5.0], [3.0, -1.0], [7.0, 2.0]])
    offsets = torch.tensor([0, 2, 2, 3])
    assert torch.equal(segment_max(values, offsets), torch.tensor([[3.0, -1.0], [0.0, 0.0], [7.0, 2.0]]))
