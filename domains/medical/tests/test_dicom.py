"""The DICOM reader on files written here in several transfer syntaxes, pydicom's test files and a real CR."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mmapps_domains.medical.dicom import (
    DicomReadError,
    DicomXrayReader,
    normalise_view,
    parse_age,
    read_dicom_xray,
    window_linear,
)
from mmapps_domains.medical.dicom_write import TRANSFER_SYNTAXES, XrayTags, write_xray_dicom

SYNTAXES = sorted(TRANSFER_SYNTAXES)


def _stored(bits: int = 12, shape: tuple[int, int] = (40, 32)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 1 << bits, size=shape).astype(np.uint16)


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_round_trip_every_syntax_and_photometric(tmp_path, syntax, photometric):
    stored = _stored()
    tags = XrayTags(photometric=photometric, window=(2000, 3000))
    path = write_xray_dicom(tmp_path / "x.dcm", stored, tags, syntax)
    image, meta = read_dicom_xray(path)
    expected = window_linear(stored.astype(np.float64), 2000, 3000)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    assert image.dtype == np.float32 and image.shape == (40, 32)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert meta["transfer_syntax"].split()[0] in {"Explicit", "Implicit", "Deflated", "RLE", "JPEG-LS", "JPEG"}
    assert meta["photometric"] == photometric and meta["bits_stored"] == 12


def test_monochrome1_is_inverted_after_windowing(tmp_path):
    stored = _stored()
    m1, _ = read_dicom_xray(write_xray_dicom(tmp_path / "a.dcm", stored, XrayTags(photometric="MONOCHROME1", window=(1000, 800))))
    m2, _ = read_dicom_xray(write_xray_dicom(tmp_path / "b.dcm", stored, XrayTags(photometric="MONOCHROME2", window=(1000, 800))))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_bits_above_bits_stored_are_masked(tmp_path):
    stored = _stored(bits=10)
    dirty = stored | np.uint16(0xA800)  # garbage in bits 11..15, outside BitsStored=10
    tags = XrayTags(bits_stored=10, window=(512, 1024))
    clean, _ = read_dicom_xray(write_xray_dicom(tmp_path / "clean.dcm", stored, tags))
    masked, _ = read_dicom_xray(write_xray_dicom(tmp_path / "dirty.dcm", dirty, tags))
    np.testing.assert_array_equal(clean, masked)


def test_signed_pixels_and_rescale_follow_the_modality_lut(tmp_path):
    values = np.array([[-2048, -1000, 0], [500, 1000, 2047]], dtype=np.int16)
    tags = XrayTags(bits_stored=12, pixel_representation=1, rescale=(2.0, -100.0), window=(0, 4000))
    image, _ = read_dicom_xray(write_xray_dicom(tmp_path / "s.dcm", values, tags))
    expected = window_linear(values.astype(np.float64) * 2.0 - 100.0, 0, 4000)
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_signed_12_bit_values_are_sign_extended(tmp_path):
    raw = np.array([[0x0FFF, 0x0800, 0x0001]], dtype=np.uint16)  # 12-bit two's complement: -1, -2048, 1
    tags = XrayTags(bits_stored=12, pixel_representation=1, window=(0, 4096), extra={})
    path = write_xray_dicom(tmp_path / "raw.dcm", raw.view(np.int16), tags)
    image, _ = read_dicom_xray(path)
    np.testing.assert_allclose(image, window_linear(np.array([[-1.0, -2048.0, 1.0]]), 0, 4096), atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_window_matches_pydicom(function):
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    ds = Dataset()
    ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", 12, 0
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 1500, 900, function
    x = np.linspace(0, 4095, 300)
    theirs = apply_windowing(x.copy(), ds) / 4095.0
    np.testing.assert_allclose(window_linear(x, 1500, 900, function), theirs, atol=1e-9)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_voi_lut_sequence_takes_precedence_over_the_window(tmp_path, photometric):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    stored = _stored()  # 12-bit
    path = write_xray_dicom(tmp_path / "lut.dcm", stored, XrayTags(photometric=photometric, window=(100, 50)))
    ds = pydicom.dcmread(path)
    first, lut = 200, (np.sqrt(np.arange(3000) / 2999.0) * 65535).astype(np.uint16)  # a gamma curve, 16-bit entries
    item = Dataset()
    item.LUTDescriptor = [len(lut), first, 16]
    item.LUTData = lut.tobytes()
    item["LUTData"].VR = "OW"
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(path)
    image, meta = read_dicom_xray(path)
    # hand-worked PS3.3 C.11.2.1.1: values below the first mapped one take the first entry, above the last the last
    expected = lut[np.clip(stored.astype(np.int64) - first, 0, len(lut) - 1)] / 65535.0
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    assert meta["voi"] == "VOILUTSequence[0]"
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_no_window_falls_back_to_percentiles(tmp_path):
    stored = _stored()
    image, meta = read_dicom_xray(write_xray_dicom(tmp_path / "n.dcm", stored, XrayTags(window=None)))
    assert meta["voi"].startswith("percentile") and 0.0 <= image.min() and image.max() <= 1.0
    assert image.min() == 0.0 and image.max() == 1.0


def test_multiframe_policies(tmp_path):
    frames = np.stack([_stored(), 4095 - _stored()])
    path = write_xray_dicom(tmp_path / "mf.dcm", frames, XrayTags(window=(2048, 4096)))
    first, meta = read_dicom_xray(path)
    assert first.shape == (40, 32) and meta["frames"] == 2
    every, _ = read_dicom_xray(path, multiframe="all")
    assert every.shape == (2, 40, 32)
    with pytest.raises(DicomReadError, match="NumberOfFrames is 2"):
        read_dicom_xray(path, multiframe="reject")


def test_metadata_is_kept_and_identifiers_are_not(tmp_path):
    tags = XrayTags(view_position="LL", sex="M", age="071Y", pixel_spacing=(0.15, 0.16), patient_name="Secret^Name",
                    patient_id="MRN-123", accession="ACC-999", institution="St Secret")
    _, meta = read_dicom_xray(write_xray_dicom(tmp_path / "m.dcm", _stored(), tags))
    assert meta["view"] == "LATERAL" and not meta["frontal"] and meta["view_position"] == "LL"
    assert meta["sex"] == "M" and meta["age"] == 71.0
    assert meta["pixel_spacing"] == (0.15, 0.16) and meta["spacing_source"] == "ImagerPixelSpacing"
    text = repr(meta)
    for secret in ("Secret", "MRN-123", "ACC-999", "19700101"):
        assert secret not in text


def test_helpers():
    assert parse_age("018M") == 1.5 and parse_age("") is None and parse_age("abc") is None
    assert normalise_view("ap") == "AP" and normalise_view(None) == "UNKNOWN" and normalise_view("LATERAL") == "LATERAL"
    assert DicomXrayReader().verify_suffix("a/b.dcm") and not DicomXrayReader().verify_suffix("a.png")


def test_pydicom_jpeg_extended_and_lossless_files():
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    for name in ("JPGExtended.dcm", "JPEG-LL.dcm"):
        path = get_testdata_file(name)
        with pytest.raises(DicomReadError, match="Modality is 'NM'"):
            read_dicom_xray(path)  # nuclear medicine: not a chest radiograph
        image, meta = read_dicom_xray(path, allowed_modalities=None)
        assert image.shape == (1024, 256) and np.isfinite(image).all() and image.std() > 0.01
        assert meta["transfer_syntax"].startswith("JPEG")
    # lossless JPEG decodes exactly to the stored values pydicom reports
    ds = dcmread(get_testdata_file("JPEG-LL.dcm"))
    ref = ds.pixel_array.astype(np.float64)
    lo, hi = np.percentile(ref, [0.5, 99.5])
    image, _ = read_dicom_xray(get_testdata_file("JPEG-LL.dcm"), allowed_modalities=None)
    np.testing.assert_allclose(image, np.clip((ref - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_pydicom_jpeg_baseline_colour_file_needs_allow_color():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    with pytest.raises(DicomReadError, match="YBR_FULL"):
        read_dicom_xray(path, allowed_modalities=None)
    image, _ = read_dicom_xray(path, allowed_modalities=None, allow_color=True)
    assert image.shape == (100, 100) and image.std() > 0.01


def test_jpeg_baseline_grayscale_written_with_pillow(tmp_path):
    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    stored = (np.add.outer(np.arange(32), np.arange(32)) * 4).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=95)
    path = write_xray_dicom(tmp_path / "b.dcm", stored.astype(np.uint16), XrayTags(bits_stored=8, window=(128, 256)))
    ds = dcmread(path)
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    image, meta = read_dicom_xray(path)
    assert meta["transfer_syntax"].startswith("JPEG Baseline")
    np.testing.assert_allclose(image, window_linear(stored.astype(np.float64), 128, 256), atol=0.03)


def test_real_cr_from_pydicom_data():
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    image, meta = read_dicom_xray(path)
    assert image.shape == (1955, 1841) and meta["photometric"] == "MONOCHROME1"
    assert meta["view"] == "PA" and meta["sex"] == "F" and meta["modality"] == "CR" and meta["bits_stored"] == 15
    assert meta["pixel_spacing"] is None  # the file says 0\0: unknown, not zero
    stored = dcmread(path).pixel_array.astype(np.float64)
    np.testing.assert_allclose(image, 1.0 - window_linear(stored, 15000, 30000), atol=1e-6)
    assert "CompressedSamples" not in repr(meta)


def test_corrupt_truncated_and_non_image_files_raise_clear_errors(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 10 + b"not dicom at all" * 10)
    with pytest.raises(DicomReadError, match="junk.dcm: not a DICOM file"):
        read_dicom_xray(junk)
    good = write_xray_dicom(tmp_path / "good.dcm", _stored(shape=(64, 64)), XrayTags(window=(2048, 4096)))
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size - 3000])
    with pytest.raises(DicomReadError, match="cut.dcm: .*(truncated|corrupt)"):
        read_dicom_xray(cut)
    from pydicom import dcmread

    ds = dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(DicomReadError, match="no PixelData"):
        read_dicom_xray(tmp_path / "nopix.dcm")
    ds = dcmread(good)
    ds.Modality, ds.SOPClassUID = "SR", "1.2.840.10008.5.1.4.1.1.88.11"
    ds.save_as(tmp_path / "sr.dcm")
    with pytest.raises(DicomReadError, match="structured report"):
        read_dicom_xray(tmp_path / "sr.dcm")
    ds = dcmread(good)
    ds.Modality = "MR"
    ds.save_as(tmp_path / "mr.dcm")
    with pytest.raises(DicomReadError, match="Modality is 'MR'; accepted modalities: CR, DX"):
        read_dicom_xray(tmp_path / "mr.dcm")
    with pytest.raises(FileNotFoundError, match="missing.dcm"):
        read_dicom_xray(tmp_path / "missing.dcm")
