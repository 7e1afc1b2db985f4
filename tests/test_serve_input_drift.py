"""Input drift: the image statistics, modality presence and view mix of served samples against the validation reference.

The statistics first on radiograph-like samples (a bright body on a dark background, z-scored as
the medical reader does, 1000 for the reference and 150-300 per window): a window from the same
distribution stays under the alert threshold, an inverted, a gamma-darkened and a window with the
note dropped cross it. Then the served path: the medical smoke checkpoint's reference computed
from its run's validation split at load, and a real DICOM served through the endpoint with its
photometric interpretation flipped (an inverted radiograph) moving the served skewness.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from mmapps.data import Sample
from mmapps.serve.drift import PSI_ALERT
from mmapps.serve.input_profile import input_distribution, sample_facts
from mmapps.serve.metrics import ServiceMetrics

KINDS = {"image": "image", "note": "text"}


def _radiograph(rng: np.random.Generator, gamma: float = 1.0, invert: bool = False) -> torch.Tensor:
    """(1, 1, 48, 48): a bright ellipse of random size and place on a dark, noisy background, z-scored like the reader."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    cy, cx, ry, rx = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.3)
    body = np.clip(1.0 - ((y - cy) / ry) ** 2 - ((x - cx) / rx) ** 2, 0, 1)
    image = np.clip(0.1 + 0.8 * body + rng.normal(0, 0.03, body.shape), 0, 1) ** gamma
    if invert:
        image = 1.0 - image
    z = (image - image.mean()) / image.std()
    return torch.from_numpy(z.astype(np.float32))[None, None]


def _samples(seed: int, n: int, missing_note: float = 0.1, **kwargs) -> list[Sample]:
    rng = np.random.default_rng(seed)
    views = rng.choice(["PA", "AP", "LATERAL"], size=n, p=[0.6, 0.3, 0.1])
    return [Sample(f"s{i}", f"s{i}", {"image": _radiograph(rng, **kwargs), "note": None if rng.uniform() < missing_note else "INDICATION: cough."},
                   meta={"view": str(views[i]), "n_images": 1, "has_note": True}) for i in range(n)]


def _window_psi(reference: dict, samples: list[Sample]) -> dict[str, float]:
    metrics = ServiceMetrics(drift_window=len(samples), drift_min_samples=len(samples))
    metrics.model_loaded("medical", "v1", 0.0, {"scores": {}, "inputs": reference, "labels": {}})
    metrics.observe("medical", "v1", {}, sample_facts(samples, KINDS))
    return {name: stat.psi for name, stat in metrics.drift("medical", "v1")["inputs"].items()}


@pytest.fixture(scope="module")
def reference() -> dict:
    return input_distribution(_samples(0, 1000), KINDS)


def test_reference_covers_presence_view_and_image_shape(reference):
    assert {"present.image", "present.note", "view", "image_skew", "image_p05", "image_p95"} <= set(reference)
    assert "image_std" not in reference  # 1 for every z-scored image: no reference, no false alarm from rounding
    assert reference["present.note"]["categories"]["False"] == pytest.approx(0.1, abs=0.05)
    assert "quantiles" in reference["image_skew"] and "categories" in reference["view"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_in_distribution_windows_stay_under_the_threshold(reference, seed):
    psi = _window_psi(reference, _samples(seed, 300))
    assert psi and max(psi.values()) < PSI_ALERT, psi


@pytest.mark.parametrize(("shift", "feature"), [
    ({"invert": True}, "image_skew"),        # a MONOCHROME1 image read as MONOCHROME2
    ({"gamma": 2.5}, "image_skew"),          # darkened grey levels
    ({"missing_note": 0.6}, "present.note"),  # the note feed dropped for most studies
])
def test_shifted_windows_cross_the_threshold(reference, shift, feature):
    psi = _window_psi(reference, _samples(7, 150, **shift))
    assert psi[feature] > PSI_ALERT, psi
    assert metrics_text_has(reference, _samples(7, 150, **shift), feature)


def metrics_text_has(reference: dict, samples: list[Sample], feature: str) -> bool:
    """The gauge reaches /metrics: ``mmapps_input_drift_psi{feature=...}`` above the alert threshold."""
    metrics = ServiceMetrics(drift_window=len(samples), drift_min_samples=len(samples))
    metrics.model_loaded("medical", "v1", 0.0, {"scores": {}, "inputs": reference, "labels": {}})
    metrics.observe("medical", "v1", {}, sample_facts(samples, KINDS))
    text = metrics.render()[0].decode()
    line = next(line for line in text.splitlines() if line.startswith("mmapps_input_drift_psi{") and f'feature="{feature}"' in line)
    return float(line.rsplit(" ", 1)[1]) > PSI_ALERT


@pytest.mark.slow
def test_served_checkpoint_gets_a_reference_and_an_inverted_dicom_moves_the_served_skew(tmp_path_factory, monkeypatch):
    import pydicom
    from fastapi.testclient import TestClient

    from mmapps.domain import resolve
    from mmapps.plugins import get_domain
    from mmapps.serve import testkit
    from mmapps.serve.app import create_app
    from mmapps.serve.service import build_state, close_state
    from mmapps.serve.state import ServiceSettings

    domain = get_domain("medical")
    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    env, predict, _ = testkit.api_keys()
    monkeypatch.setenv("MMAPPS_API_KEYS", env)
    metrics = ServiceMetrics(drift_window=10, drift_min_samples=1)
    state = build_state(domain, checkpoint, ServiceSettings(decode_workers=1, max_batch_size=1), version="v1", metrics=metrics)
    try:
        reference = metrics._drift[("medical", "v1")].inputs.references
        assert {"present.image", "present.note", "image_skew", "view"} <= set(reference)  # from the run's validation split
        assert (checkpoint.parent.parent / "input_distribution.v2.json").is_file()  # kept for the next load
        path = sorted(Path(resolve(domain.write_demo_data)(tmp_path_factory.mktemp("demo"), 2, 3)).rglob("*.dcm"))[0]
        ds = pydicom.dcmread(path)
        flipped = {"MONOCHROME1": "MONOCHROME2", "MONOCHROME2": "MONOCHROME1"}[ds.PhotometricInterpretation]
        originals = path.read_bytes()
        ds.PhotometricInterpretation = flipped
        buffer = io.BytesIO()
        ds.save_as(buffer)
        skews = []
        with TestClient(create_app(state)) as client:
            for data in (originals, buffer.getvalue()):
                r = client.post("/v1/medical/predict", files=[("dicom", ("a.dcm", data, "application/dicom"))], headers={"Authorization": f"Bearer {predict}"})
                assert r.status_code == 200, r.text
                skews.append(list(metrics._drift[("medical", "v1")].inputs._values["image_skew"])[-1])
    finally:
        close_state(state)
    assert abs(skews[0]) > 0.1 and np.sign(skews[0]) == -np.sign(skews[1]), skews  # the inversion flips the skewness the server reports
