"""Every registered fusion exports to ONNX with presence as graph inputs and equals PyTorch on onnxruntime.

One export per fusion (module-scoped), then: every subset of modalities present, batch sizes,
images per study and text lengths not used for tracing, mixed presence within a batch, absent slots
filled with huge random values (outputs unchanged), presence switched on (outputs change).
A tiny BERT-shaped text encoder keeps each export to seconds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from mmapps.data.sample import Sample, collate_samples
from mmapps.domain import Domain, ModalitySpec, TaskSpec

ATOL, RTOL = 1e-4, 1e-3
LAYOUTS = {"image": "padded", "note": "text", "tab": "fixed"}
MODALITIES = tuple(LAYOUTS)
WORDS = ["chest", "pain", "fever", "cough", "no", "effusion", "likely", "edema", "mild", "cardiomegaly", "possible", "pneumonia"]

DOMAIN = Domain(
    name="exporttest",
    description="three modalities of three layouts",
    modalities=(ModalitySpec("image", "image", "synthetic", layout="padded"), ModalitySpec("note", "text", "synthetic", layout="text"), ModalitySpec("tab", "tabular", "synthetic")),
    tasks=(TaskSpec("y", "multilabel", ("a", "b", "c"), {}, "mmapps.tasks.postprocess:sigmoid_scores", "mmapps.tasks.multilabel:multilabel_metrics", "auroc/macro"),),
    build_datasets="unused:unused",
    write_demo_data="unused:unused",
    recipes={"default": {}, "smoke": {}},
)


def _fusions() -> list:
    from mmapps.models.build import register_core_parts
    from mmapps.registry import FUSIONS

    register_core_parts()
    return [pytest.param(name, marks=() if name == "attention" else pytest.mark.slow) for name in FUSIONS.list()]


def make_samples(n: int, seed: int, present: dict[str, list[bool]] | None = None, max_images: int = 2, words: int = 6) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        has = {m: (present[m][i] if present else True) for m in MODALITIES}
        images = torch.randn(1 + i % max_images, 1, 32, 32, generator=g)
        note = " ".join(rng.choice(WORDS, size=1 + (i * 3) % words))
        inputs = {"image": images if has["image"] else None, "note": note if has["note"] else None, "tab": torch.randn(3, generator=g) if has["tab"] else None}
        samples.append(Sample(f"s{seed}-{i}", f"g{i}", inputs, {"y": torch.tensor([1.0, 0.0, 1.0])}))
    return samples


def batch_of(samples: list[Sample]):
    return collate_samples(samples, LAYOUTS)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    from mmapps.export.testing import write_tiny_text_model

    return write_tiny_text_model(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="module", params=_fusions())
def exported(request, text_model, tmp_path_factory):
    """(fusion name, eval-mode PyTorch model, OnnxModel) for one fusion, exported once."""
    from mmapps.config import validate_config
    from mmapps.export.export import export_graph
    from mmapps.export.fusion_adapter import FusionExport
    from mmapps.export.session import OnnxModel
    from mmapps.models.build import build_fusion_model

    torch.manual_seed(0)
    encoders = {
        "image": {"name": "image_cnn", "options": {"backbone": "small_cnn", "in_channels": 1, "width": 4}},
        "note": {"name": "text_transformer", "options": {"model": str(text_model), "max_length": 24}},
        "tab": {"name": "tabular_mlp", "options": {"in_features": 3, "hidden": 8}},
    }
    cfg = validate_config({"domain": DOMAIN.name, "model": {"dim": 16, "encoders": encoders, "fusion": {"name": request.param}}})
    model = build_fusion_model(cfg, DOMAIN).eval()
    with torch.no_grad():  # BatchNorm running statistics away from their initial values, so they matter in the graph
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    example = batch_of(make_samples(3, seed=0))
    folder = tmp_path_factory.mktemp(f"export-{request.param}")
    sidecar = export_graph(FusionExport(model, DOMAIN, example), example, folder, 18, DOMAIN, "domain: exporttest\n")
    return request.param, model, OnnxModel(sidecar, folder)


def assert_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    diff = (got - ref).abs()
    bad = diff > ATOL + RTOL * ref.abs()
    assert not bad.any(), f"{what}: {int(bad.sum())} values out of tolerance, max |d| {float(diff.max()):.3g}"


def both(model, onnx_model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        ref = model(batch)["y"]
    return onnx_model(batch)["y"], ref


def test_every_subset_of_present_modalities_equals_pytorch(exported):
    name, model, onnx_model = exported
    for k in range(1, len(MODALITIES) + 1):
        for subset in itertools.combinations(MODALITIES, k):
            present = {m: [m in subset] * 4 for m in MODALITIES}
            batch = batch_of(make_samples(4, seed=10 + k, present=present))
            # a modality absent from every sample: eager skips its encoder, the graph gets zeros + presence False
            assert all((batch.inputs[m].data is None) == (m not in subset) for m in ("image", "tab"))
            got, ref = both(model, onnx_model, batch)
            assert_close(got, ref, f"{name} fusion, present {subset}")


def test_shapes_not_used_for_tracing(exported):
    name, model, onnx_model = exported
    for n, max_images, words in ((1, 1, 1), (5, 3, 11), (7, 4, 9)):  # traced on 3 samples, <= 2 images, short notes
        batch = batch_of(make_samples(n, seed=20 + n, max_images=max_images, words=words))
        got, ref = both(model, onnx_model, batch)
        assert got.shape == (n, 3)
        assert_close(got, ref, f"{name} fusion, batch {n}, up to {max_images} images")


def test_mixed_presence_within_one_batch(exported):
    name, model, onnx_model = exported
    rng = np.random.default_rng(3)
    present = {m: list(rng.random(8) < 0.5) for m in MODALITIES}
    for i in range(8):  # every sample keeps at least one modality; eager then runs every encoder on the batch
        if not any(present[m][i] for m in MODALITIES):
            present["note"][i] = True
    batch = batch_of(make_samples(8, seed=30, present=present, max_images=3))
    got, ref = both(model, onnx_model, batch)
    assert_close(got, ref, f"{name} fusion, mixed presence")


def test_absent_slots_are_ignored_and_presence_matters(exported):
    name, _, onnx_model = exported
    present = {"image": [True, False, True, False], "note": [False, True, True, False], "tab": [True, True, False, True]}
    batch = batch_of(make_samples(4, seed=40, present=present))
    feeds = onnx_model.runtime.feeds(batch)
    clean = onnx_model.run(feeds)["y"]
    rng = np.random.default_rng(0)
    noisy = {k: v.copy() for k, v in feeds.items()}
    for m in ("image", "tab"):
        absent = ~feeds[f"{m}_present"]
        noisy[m][absent] = (rng.standard_normal(noisy[m][absent].shape) * 1e4).astype(np.float32)
    absent = ~feeds["note_present"]
    noisy["note_input_ids"][absent] = rng.integers(0, 30000, size=noisy["note_input_ids"][absent].shape)
    noisy["note_attention_mask"][absent] = 1
    padded = ~feeds["image_mask"] & feeds["image_present"][:, None]  # padded images of present studies
    noisy["image"][padded] = 1e4
    np.testing.assert_allclose(onnx_model.run(noisy)["y"], clean, rtol=RTOL, atol=ATOL, err_msg=f"{name}: values in absent slots changed the outputs")
    switched = {k: v.copy() for k, v in noisy.items()}
    switched["tab_present"][:] = True  # sample 2's table (random values) now counts
    changed = np.abs(onnx_model.run(switched)["y"] - clean).max(1)
    assert changed[2] > 1e-3, f"{name}: switching a presence flag on changed nothing"
    np.testing.assert_allclose(changed[[0, 1, 3]], 0, atol=ATOL)


def test_graph_inputs_carry_presence_and_dynamic_axes(exported):
    import onnx

    _, _, onnx_model = exported
    graph = onnx.load(str(onnx_model.model_path), load_external_data=False).graph
    types = {i.name: i.type.tensor_type for i in graph.input}
    assert {f"{m}_present" for m in MODALITIES} <= set(types)
    assert all(types[f"{m}_present"].elem_type == onnx.TensorProto.BOOL for m in MODALITIES)
    dims = {name: [d.dim_param or d.dim_value for d in t.shape.dim] for name, t in types.items()}
    assert isinstance(dims["image"][0], str) and isinstance(dims["image"][1], str), dims["image"]  # batch, images per study
    assert dims["image"][2:] == [1, 32, 32]
    assert isinstance(dims["note_input_ids"][1], str), dims["note_input_ids"]  # text length
    assert dims["image"][0] == dims["tab"][0] == dims["note_input_ids"][0], "one batch axis shared by every input"
