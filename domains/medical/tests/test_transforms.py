"""Preprocessing (MONAI resize / pad / z-score) and the train-only augmentation."""

from __future__ import annotations

import numpy as np

from mmapps_domains.medical.dicom_write import XrayTags, write_xray_dicom
from mmapps_domains.medical.options import MedicalDataOptions
from mmapps_domains.medical.transforms import RandomAffine2d, build_augment, build_preprocess, preprocess_config


def test_preprocess_resizes_longest_side_pads_and_normalises(tmp_path):
    stored = np.random.default_rng(0).integers(0, 4096, size=(40, 20)).astype(np.uint16)
    path = write_xray_dicom(tmp_path / "a.dcm", stored, XrayTags(window=(2048, 4096)))
    array, meta = build_preprocess(MedicalDataOptions(image_size=32))(path)
    assert array.shape == (1, 32, 32) and array.dtype == np.float32
    assert abs(float(array.mean())) < 1e-4 and abs(float(array.std()) - 1.0) < 1e-3
    assert np.all(array[0, :, :7] == array[0, 0, 0])  # 40x20 -> 32x16, padded by 8 columns on the left
    assert meta["rows"] == 40 and meta["columns"] == 20


def test_cache_key_config_changes_with_size():
    assert preprocess_config(MedicalDataOptions(image_size=32)) != preprocess_config(MedicalDataOptions(image_size=64))


def test_augmentation_is_seeded_and_keeps_shape():
    x = np.random.default_rng(1).random((1, 32, 32)).astype(np.float32)
    assert np.array_equal(RandomAffine2d(prob=0.0)(x), x)
    from mmapps.data.rng import sample_rng

    a, b = build_augment(32), build_augment(32)
    outs_a = [a(x, sample_rng(3, 0, i)) for i in range(5)]
    outs_b = [b(x, sample_rng(3, 0, i)) for i in range(5)]  # a pure function of (seed, epoch, index)
    assert all(np.array_equal(p, q) for p, q in zip(outs_a, outs_b))
    assert not np.array_equal(a(x, sample_rng(3, 1, 0)), a(x, sample_rng(3, 2, 0))) or not np.array_equal(a(x, sample_rng(3, 1, 1)), a(x, sample_rng(3, 2, 1)))
    assert all(o.shape == (1, 32, 32) and o.dtype == np.float32 for o in outs_a)
    assert any(not np.allclose(o, x) for o in outs_a)
    theta_zero = RandomAffine2d(prob=1.0, rotate=0.0, scale=0.0, translate=0.0)(x)
    np.testing.assert_allclose(theta_zero, x, atol=1e-5)  # identity affine resamples exactly
