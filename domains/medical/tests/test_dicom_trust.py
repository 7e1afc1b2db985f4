"""The reader on files written the way third-party tools write them: no preamble, no Modality, colour,
malformed LUT sequences, truncated files, wrong transfer syntax claims, degenerate windows."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from mmapps_domains.medical.dicom import (
    DegenerateImageError,
    DicomReadError,
    read_dicom_xray,
    window_linear,
)
from mmapps_domains.medical.dicom_write import (
    XrayTags,
    write_color_dicom,
    write_xray_dicom,
)

BT601 = np.array([0.299, 0.587, 0.114])


def _stored(shape=(48, 40), bits=12):
    return np.random.default_rng(1).integers(0, 1 << bits, size=shape).astype(np.uint16)


def _expected(stored, center=2048, width=4096):
    return window_linear(stored.astype(np.float64), center, width)


def test_dataset_without_preamble_or_file_meta_reads(tmp_path):
    """pydicom (like several toolkits) writes a bare data set when asked not to enforce the file format."""
    import pydicom

    stored = _stored()
    src = write_xray_dicom(tmp_path / "src.dcm", stored, XrayTags(window=(2048, 4096)))
    for implicit in (True, False):
        ds = pydicom.dcmread(src)
        del ds.file_meta
        ds.preamble = None
        out = tmp_path / f"bare_{implicit}.dcm"
        pydicom.dcmwrite(out, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=False)
        assert out.read_bytes()[:2] == b"\x08\x00" and b"DICM" not in out.read_bytes()[:132]
        image, meta = read_dicom_xray(out)
        np.testing.assert_allclose(image, _expected(stored), atol=1e-6)
        assert meta["transfer_syntax"].startswith("Implicit" if implicit else "Explicit")


@pytest.mark.parametrize(
    "sop, modality",
    [("1.2.840.10008.5.1.4.1.1.1", "CR"), ("1.2.840.10008.5.1.4.1.1.1.1", "DX"), ("1.2.840.10008.5.1.4.1.1.1.2", "MG"),
     ("1.2.840.10008.5.1.4.1.1.1.3", "IO")],
)
def test_missing_modality_is_taken_from_the_sop_class(tmp_path, sop, modality):
    import pydicom

    path = write_xray_dicom(tmp_path / "m.dcm", _stored(), XrayTags(window=(2048, 4096)))
    ds = pydicom.dcmread(path)
    del ds.Modality
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop
    ds.save_as(path)
    if modality in ("CR", "DX"):
        assert read_dicom_xray(path).metadata["modality"] == modality
    else:
        with pytest.raises(DicomReadError, match=f"Modality is '{modality}'; accepted modalities: CR, DX"):
            read_dicom_xray(path)
        assert read_dicom_xray(path, allowed_modalities=[modality]).metadata["modality"] == modality


def test_modality_wins_and_for_processing_is_refused(tmp_path):
    import pydicom

    path = write_xray_dicom(tmp_path / "m.dcm", _stored(), XrayTags(window=(2048, 4096)))
    ds = pydicom.dcmread(path)
    ds.Modality = "MR"  # present: wins over the CR SOP class
    ds.save_as(path)
    with pytest.raises(DicomReadError, match="Modality is 'MR'"):
        read_dicom_xray(path)
    for sop in ("1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.2.1"):
        ds = pydicom.dcmread(path)
        ds.Modality = ""  # written empty, as some toolkits do
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop
        ds.save_as(path)
        with pytest.raises(DicomReadError, match="For Processing: raw detector data"):
            read_dicom_xray(path, allowed_modalities=None)
    dx = write_xray_dicom(tmp_path / "dx.dcm", _stored(), XrayTags(modality="DX", window=(2048, 4096)))
    ds = pydicom.dcmread(dx)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(dx)
    with pytest.raises(DicomReadError, match="PresentationIntentType is 'FOR PROCESSING'"):
        read_dicom_xray(dx)
    ds.Modality, ds.SOPClassUID = "", "1.2.3.4"
    del ds.PresentationIntentType
    ds.save_as(dx)
    with pytest.raises(DicomReadError, match=r"Modality is absent and SOPClassUID 1.2.3.4 is not a projection radiograph"):
        read_dicom_xray(dx)


def test_palette_color_is_applied(tmp_path):
    indices = (np.arange(32 * 24).reshape(32, 24) % 256).astype(np.uint8)
    palette = np.stack([np.linspace(0, 65535, 256), np.linspace(65535, 0, 256), np.full(256, 30000)], 1).astype(np.uint16)
    path = write_color_dicom(tmp_path / "p.dcm", indices, "PALETTE COLOR", palette=palette)
    with pytest.raises(DicomReadError, match="PALETTE COLOR.*allow_color"):
        read_dicom_xray(path, allowed_modalities=None)
    image, meta = read_dicom_xray(path, allowed_modalities=None, allow_color=True)
    np.testing.assert_allclose(image, palette[indices].astype(np.float64) @ BT601 / 65535.0, atol=1e-6)
    assert meta["voi"].startswith("none (colour PALETTE COLOR")


def _rgb(shape=(32, 48)):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return np.stack([x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("subsampling, photometric", [(0, "YBR_FULL"), (1, "YBR_FULL_422")])
def test_ybr_jpeg_is_not_converted_twice_and_skips_the_rescale_and_window(tmp_path, subsampling, photometric):
    """Pillow writes YCbCr JPEG; pydicom's decoder returns RGB while the header says YBR."""
    from PIL import Image

    rgb = _rgb()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=subsampling)
    extra = {"RescaleSlope": "1", "RescaleIntercept": "-1024", "WindowCenter": "40", "WindowWidth": "400"}  # a CT-style window
    path = write_color_dicom(tmp_path / "y.dcm", rgb, photometric, jpeg=buf.getvalue(), extra=extra)
    image, _ = read_dicom_xray(path, allowed_modalities=None, allow_color=True)
    expected = rgb.astype(np.float64) @ BT601 / 255.0
    assert np.abs(image - expected).mean() < 0.01 and np.abs(image - expected).max() < 0.06


def test_native_ybr_full_uses_pydicoms_conversion_once(tmp_path):
    from pydicom.pixels import convert_color_space

    rgb = _rgb()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_color_dicom(tmp_path / "n.dcm", ybr, "YBR_FULL")
    image, _ = read_dicom_xray(path, allowed_modalities=None, allow_color=True)
    np.testing.assert_allclose(image, rgb.astype(np.float64) @ BT601 / 255.0, atol=2.5 / 255)
    rgb_path = write_color_dicom(tmp_path / "r.dcm", rgb, "RGB")
    image, _ = read_dicom_xray(rgb_path, allowed_modalities=None, allow_color=True)
    np.testing.assert_allclose(image, rgb.astype(np.float64) @ BT601 / 255.0, atol=1e-6)


@pytest.mark.parametrize("damage", ["no_data", "short_descriptor", "data_not_bytes"])
def test_malformed_lut_sequences_give_the_readers_error(tmp_path, damage):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        path = write_xray_dicom(tmp_path / f"{keyword}.dcm", _stored(), XrayTags(window=(2048, 4096)))
        ds = pydicom.dcmread(path)
        item = Dataset()
        item.LUTDescriptor = [4096, 0] if damage == "short_descriptor" else [4096, 0, 16]
        if damage != "no_data":
            item.LUTData = (np.arange(4096, dtype=np.uint16) * 16).tobytes() if damage != "data_not_bytes" else [1, 2, 3]
            item["LUTData"].VR = "OW" if damage != "data_not_bytes" else "US"
        if keyword == "ModalityLUTSequence":
            item.ModalityLUTType = "US"
        setattr(ds, keyword, Sequence([item]))
        ds.save_as(path)
        with pytest.raises(DicomReadError, match=f"{keyword} is malformed"):
            read_dicom_xray(path)


def _claim(src, dst, uid):
    """Rewrite only the file meta's transfer syntax, as a mislabelling export tool does."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info

    data = src.read_bytes()
    body = data[144 + struct.unpack("<I", data[140:144])[0]:]
    meta = FileMetaDataset(pydicom.dcmread(src).file_meta)
    meta.TransferSyntaxUID = uid
    buf = io.BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    dst.write_bytes(buf.getvalue() + body)
    return dst


@pytest.mark.parametrize(
    "written, claimed, message",
    [
        ("jpeg2000", "1.2.840.10008.1.2.4.50", "JPEG Baseline .* but the pixel data looks like jpeg2000"),
        ("jpeg2000", "1.2.840.10008.1.2.4.80", "JPEG-LS .* but the pixel data looks like jpeg2000"),
        ("jpegls", "1.2.840.10008.1.2.4.90", "JPEG 2000 .* but the pixel data looks like jpeg-ls"),
        ("rle", "1.2.840.10008.1.2.4.90", "but the pixel data looks like rle"),
        ("explicit_le", "1.2.840.10008.1.2.4.90", "a compressed one, but the pixel data is not encapsulated"),
        ("jpegls", "1.2.840.10008.1.2.1", "not encoded as the transfer syntax Explicit VR Little Endian"),
        ("explicit_le", "1.2.840.10008.1.2.2", "PixelData element .* could not be read: the file is truncated, or its transfer syntax"),
        ("explicit_le", "1.2.840.10008.1.2.1.99", "not encoded as its transfer syntax Deflated"),
        ("explicit_le", "1.2.840.10008.1.2", None),  # implicit claimed, explicit written: pydicom reads it right
    ],
)
def test_wrong_transfer_syntax_claims_give_right_data_or_a_clear_error(tmp_path, written, claimed, message):
    stored = _stored()
    src = write_xray_dicom(tmp_path / "src.dcm", stored, XrayTags(window=(2048, 4096)), written)
    path = _claim(src, tmp_path / "claimed.dcm", claimed)
    if message is None:
        np.testing.assert_allclose(read_dicom_xray(path).array, _expected(stored), atol=1e-6)
        return
    with pytest.raises(DicomReadError, match="claimed.dcm: .*" + message):
        read_dicom_xray(path)


@pytest.mark.parametrize("syntax", ["explicit_le", "rle", "jpegls", "jpeg2000"])
@pytest.mark.parametrize("cut", [5, 400])
def test_truncated_files_give_a_clear_error(tmp_path, syntax, cut):
    src = write_xray_dicom(tmp_path / "src.dcm", _stored(), XrayTags(window=(2048, 4096)), syntax)
    path = tmp_path / "cut.dcm"
    path.write_bytes(src.read_bytes()[:-cut])
    with pytest.raises(DicomReadError, match="cut.dcm: .*truncated"):
        read_dicom_xray(path)


def test_degenerate_images_are_refused_by_default(tmp_path):
    flat = write_xray_dicom(tmp_path / "flat.dcm", np.full((32, 32), 700, np.uint16), XrayTags(window=(2048, 4096)))
    with pytest.raises(DegenerateImageError, match="degenerate image: every pixel is"):
        read_dicom_xray(flat)
    stored = _stored()
    # a window far below the data (a bit-depth mix-up): almost every pixel white
    high = write_xray_dicom(tmp_path / "sat.dcm", stored, XrayTags(window=(20, 10)))
    with pytest.raises(DegenerateImageError, match=r"degenerate image: 99\.\d% of pixels are saturated .*window LINEAR c=20 w=10"):
        read_dicom_xray(high)
    kept, _ = read_dicom_xray(high, skip_degenerate=False)
    assert np.mean(kept >= 1.0) > 0.99
    # 90 % saturated is still an image
    mostly = stored.copy()
    mostly.flat[: int(0.9 * mostly.size)] = 4095
    image, _ = read_dicom_xray(write_xray_dicom(tmp_path / "ok.dcm", mostly, XrayTags(window=(2048, 4000))))
    assert 0.89 < np.mean(image >= 1.0) < 0.95


def test_real_cr_radiographs_are_not_degenerate():
    from pydicom.data import get_testdata_file

    for name in ("RG1_UNCR.dcm", "RG3_UNCR.dcm"):
        image, _ = read_dicom_xray(get_testdata_file(name))
        assert np.mean((image <= 0) | (image >= 1)) < 0.5
