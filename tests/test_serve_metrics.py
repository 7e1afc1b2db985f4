"""ServiceMetrics: the Prometheus exposition parsed back, label hygiene, drift gauges from model.json references."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmapps.serve.drift import categorical_reference, numeric_reference
from mmapps.serve.metrics import ServiceMetrics, reference_from_sidecar

SENTINEL = "PATIENT^SENTINEL 1234567"


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_traffic_metrics_round_trip():
    m = ServiceMetrics()
    for seconds in (0.004, 0.02, 0.3):
        m.request("/v1/medical/predict", 200, seconds)
    m.request("/v1/medical/predict", 503, 0.001)
    m.batch("medical", 8, [0.002] * 8)
    m.input_error("corrupt_dicom")
    m.ready(True)
    with m.in_flight("/v1/medical/predict"):
        inside = samples(m)[("mmapps_in_flight_requests", (("endpoint", "/v1/medical/predict"),))]
    s = samples(m)
    ep = ("endpoint", "/v1/medical/predict")
    assert inside == 1 and s[("mmapps_in_flight_requests", (ep,))] == 0
    assert s[("mmapps_requests_total", (ep, ("status", "200")))] == 3
    assert s[("mmapps_requests_total", (ep, ("status", "503")))] == 1
    assert s[("mmapps_request_duration_seconds_count", (ep,))] == 4
    assert s[("mmapps_request_duration_seconds_bucket", (ep, ("le", "0.025")))] == 3
    assert s[("mmapps_request_duration_seconds_sum", (ep,))] == pytest.approx(0.325)
    assert s[("mmapps_batch_size_bucket", (("le", "8.0"), ("model", "medical")))] == 1
    assert s[("mmapps_batch_size_bucket", (("le", "4.0"), ("model", "medical")))] == 0
    assert s[("mmapps_batch_queue_seconds_count", (("model", "medical"),))] == 8
    assert s[("mmapps_input_errors_total", (("kind", "corrupt_dicom"),))] == 1
    assert s[("mmapps_ready", ())] == 1


def test_model_versions_and_load_time():
    m = ServiceMetrics()
    m.model_loaded("medical", "v1", 1.5)
    m.model_loaded("medical", "v2", 2.5)
    m.model_unloaded("medical", "v1")
    s = samples(m)
    assert s[("mmapps_model_info", (("model", "medical"), ("version", "v1")))] == 0
    assert s[("mmapps_model_info", (("model", "medical"), ("version", "v2")))] == 1
    assert s[("mmapps_model_load_seconds", (("model", "medical"), ("version", "v2")))] == 2.5


def test_payload_never_becomes_a_label():
    m = ServiceMetrics()
    m.request(f"/v1/medical/predict?note={SENTINEL}", 400, 0.01)
    m.input_error(SENTINEL)
    m.model_loaded("medical", "v1", 0.1, reference={"scores": {}, "inputs": {"view": categorical_reference(["PA"])}})
    for _ in range(120):
        m.observe("medical", "v1", {}, {"view": SENTINEL, "note": SENTINEL})
    body = m.render()[0].decode()
    assert "SENTINEL" not in body and "1234567" not in body
    s = samples(m)
    assert s[("mmapps_requests_total", (("endpoint", "other"), ("status", "400")))] == 1
    assert s[("mmapps_input_errors_total", (("kind", "other"),))] == 1
    # the unseen category counted as <other> and drove PSI up, its value never shown
    assert s[("mmapps_input_drift_psi", (("feature", "view"), ("model", "medical"), ("version", "v1")))] > 1


def sidecar(rng: np.random.Generator) -> dict:
    return {"drift": {
        "scores": {"effusion": numeric_reference(rng.beta(2, 5, 2000)), "edema": numeric_reference(rng.beta(1, 8, 2000))},
        "inputs": {"view": categorical_reference(["PA"] * 60 + ["AP"] * 40),
                   "present.text": categorical_reference([True] * 95 + [False] * 5),
                   "image_mean": numeric_reference(rng.normal(0.5, 0.1, 2000))},
    }}


@pytest.mark.parametrize("shifted", [False, True])
def test_drift_gauges_cross_threshold_only_on_shifted_traffic(shifted):
    rng = np.random.default_rng(7)
    m = ServiceMetrics(drift_window=300)
    m.model_loaded("medical", "v1", 0.1, reference=reference_from_sidecar(sidecar(rng)))
    for _ in range(300):
        if shifted:  # a new scanner: AP-only, notes missing, brighter images, scores up
            scores = {"effusion": rng.beta(4, 3, 1), "edema": rng.beta(1, 8, 1)}
            inputs = {"view": "AP", "present.text": rng.random() < 0.5, "image_mean": rng.normal(0.65, 0.1)}
        else:
            scores = {"effusion": rng.beta(2, 5, 1), "edema": rng.beta(1, 8, 1)}
            inputs = {"view": "PA" if rng.random() < 0.6 else "AP", "present.text": rng.random() < 0.95,
                      "image_mean": rng.normal(0.5, 0.1)}
        m.observe("medical", "v1", scores, inputs)
    s = samples(m)
    lab = (("model", "medical"), ("version", "v1"))

    def gauge(name, key, value):
        return s[(name, tuple(sorted(lab + ((key, value),))))]

    assert gauge("mmapps_score_psi", "score", "edema") < 0.2  # unchanged in both runs
    assert gauge("mmapps_score_ks_pvalue", "score", "edema") > 0.01
    psi_effusion = gauge("mmapps_score_psi", "score", "effusion")
    psi_inputs = [gauge("mmapps_input_drift_psi", "feature", f) for f in ("view", "present.text", "image_mean")]
    missing = gauge("mmapps_input_missing_rate", "modality", "text")
    assert s[("mmapps_drift_window_samples", lab)] == 300
    if shifted:
        assert psi_effusion > 0.2 and gauge("mmapps_score_ks_pvalue", "score", "effusion") < 0.01
        assert min(psi_inputs) > 0.2 and missing > 0.4
    else:
        assert psi_effusion < 0.2 and max(psi_inputs) < 0.2 and missing < 0.1


def test_export_score_distribution_drives_per_label_drift():
    """The export's model.json ``score_distribution`` (E1's writer) and the service's (N, L) task scores."""
    from mmapps.export.scores import score_distribution

    rng = np.random.default_rng(1)
    val = np.stack([rng.beta(2, 5, 600), rng.beta(1, 8, 600)], 1)  # (N, L) validation scores
    task = SimpleNamespace(labels=["effusion", "edema"], head="multilabel")
    records = [SimpleNamespace(prediction={"scores": row.tolist()}) for row in val]
    sidecar = json.loads(json.dumps({"score_distribution": {"findings": score_distribution(task, records)}}))
    ref = reference_from_sidecar(sidecar)
    assert sorted(ref["scores"]) == ["findings/edema", "findings/effusion"] and ref["labels"] == {"findings": ["effusion", "edema"]}
    m = ServiceMetrics(drift_window=300)
    m.model_loaded("medical", "v1", 0.1, reference=ref)
    for _ in range(300):  # effusion shifted up, edema as in validation; one (1, L) batch per request
        m.observe("medical", "v1", {"findings": np.array([[rng.beta(4, 3), rng.beta(1, 8)]])}, {"present.text": True})
    stats = m.drift("medical", "v1")["scores"]
    assert stats["findings/effusion"].drifted and stats["findings/effusion"].psi > 0.2
    assert not stats["findings/edema"].drifted
    assert reference_from_sidecar({}) == {"scores": {}, "inputs": {}, "labels": {}}
    m.model_loaded("medical", "ckpt", 0.1)  # a training checkpoint: no reference, missing rate still kept
    for present in [True] * 60 + [False] * 40:
        m.observe("medical", "ckpt", {"findings": np.zeros((1, 2))}, {"present.text": present})
    assert samples(m)[("mmapps_input_missing_rate", (("modality", "text"), ("model", "medical"), ("version", "ckpt")))] == pytest.approx(0.4)
