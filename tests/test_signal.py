"""Signal readers on files written by wfdb, numpy and the csv module; the signal_resnet1d encoder's time alignment."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mmapps.data import Sample, collate_samples
from mmapps.readers.signal import SignalReadError, read_signal

LEADS = ["I", "II", "V1"]


def _wave(n: int = 500, fs: float = 100.0) -> np.ndarray:
    t = np.arange(n) / fs
    return np.stack([np.sin(2 * np.pi * f * t) * a for f, a in ((1.0, 1.0), (2.0, 0.5), (0.5, 2.0))], axis=1)


def test_wfdb_record_read_in_physical_units_with_rate_names_units(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    wave = _wave()
    wfdb.wrsamp("rec1", fs=100, units=["mV"] * 3, sig_name=LEADS, p_signal=wave, fmt=["16"] * 3, write_dir=str(tmp_path))
    for path in (tmp_path / "rec1", tmp_path / "rec1.hea"):
        record = read_signal(path)
        assert record.data.shape == (500, 3) and record.data.dtype == np.float32
        assert record.fs == 100.0 and record.channels == LEADS and record.units == ["mV"] * 3
        assert np.abs(record.data - wave).max() < 1e-3  # 16-bit quantisation of wfdb's chosen gain
    picked = read_signal(tmp_path / "rec1", channels=["v1", "I"])
    assert picked.channels == ["V1", "I"] and np.allclose(picked.data[:, 0], wave[:, 2], atol=1e-3)
    with pytest.raises(SignalReadError, match=r"rec1: channel\(s\) \['V6'\] not in the file; it has \['I', 'II', 'V1'\]"):
        read_signal(tmp_path / "rec1", channels=["V6"])
    with pytest.raises(SignalReadError, match="sampling rate 100 Hz, expected 500 Hz"):
        read_signal(tmp_path / "rec1", fs=500)


def test_wfdb_resampling_and_broken_records_name_the_file(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    wfdb.wrsamp("rec2", fs=500, units=["mV"] * 3, sig_name=LEADS, p_signal=_wave(2500, 500.0), fmt=["16"] * 3, write_dir=str(tmp_path))
    down = read_signal(tmp_path / "rec2", target_fs=100)
    assert down.data.shape == (500, 3) and down.fs == 100.0 and down.meta["original_fs"] == 500.0
    assert np.abs(down.data[50:-50] - _wave()[50:-50]).max() < 0.02  # low-frequency content kept
    with pytest.raises(SignalReadError, match=r"missing\.hea: WFDB header not found"):
        read_signal(tmp_path / "missing")
    (tmp_path / "rec2.dat").write_bytes((tmp_path / "rec2.dat").read_bytes()[:100])  # truncated signal file
    with pytest.raises(SignalReadError, match=r"rec2: not a readable WFDB record"):
        read_signal(tmp_path / "rec2")


def test_npy_reader_never_unpickles_and_checks_shape_rate_and_finiteness(tmp_path):
    np.save(tmp_path / "ok.npy", _wave().astype(np.float32))
    assert read_signal(tmp_path / "ok.npy", fs=100).data.shape == (500, 3)
    np.save(tmp_path / "cf.npy", _wave().T)
    assert read_signal(tmp_path / "cf.npy", fs=100, channels_first=True).data.shape == (500, 3)
    with pytest.raises(SignalReadError, match="carries no sampling rate"):
        read_signal(tmp_path / "ok.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SignalReadError, match=r"obj\.npy: not a readable \.npy array"):
        read_signal(tmp_path / "obj.npy", fs=100)
    bad = _wave()
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(SignalReadError, match=r"nan\.npy: 1 NaN/infinite sample\(s\) \(ch1: 1\)"):
        read_signal(tmp_path / "nan.npy", fs=100)
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(SignalReadError, match=r"found a 3-D float64 array of shape \(2, 3, 4\)"):
        read_signal(tmp_path / "cube.npy", fs=100)
    with pytest.raises(SignalReadError, match=r"unknown signal file suffix '\.edf'"):
        (tmp_path / "x.edf").write_bytes(b"0")
        read_signal(tmp_path / "x.edf")


def test_csv_reader_takes_the_rate_from_the_time_column(tmp_path):
    wave = _wave(200, 50.0)
    with (tmp_path / "acc.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "ax", "ay", "az"])
        writer.writerows([[f"{i / 50:.4f}", *row] for i, row in enumerate(wave)])
    record = read_signal(tmp_path / "acc.csv")
    assert record.fs == pytest.approx(50.0) and record.channels == ["ax", "ay", "az"] and np.allclose(record.data, wave, atol=1e-6)
    with pytest.raises(SignalReadError, match="the time column gives 50 Hz, expected 100 Hz"):
        read_signal(tmp_path / "acc.csv", fs=100)
    with (tmp_path / "plain.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["a", "b"], [1, 2], [3, ""], [5, 6]])
    with pytest.raises(SignalReadError, match=r"plain\.csv:3: a non-numeric value"):
        read_signal(tmp_path / "plain.csv", fs=10)
    with (tmp_path / "norate.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["a", "b"], [1, 2], [3, 4]])
    with pytest.raises(SignalReadError, match="no time column .* and no fs given"):
        read_signal(tmp_path / "norate.csv")
    assert read_signal(tmp_path / "norate.csv", fs=10).data.shape == (2, 2)


def _encoder(**options):
    from mmapps.models.build import register_core_parts
    from mmapps.registry import ENCODERS

    register_core_parts()
    torch.manual_seed(0)
    return ENCODERS.get("signal_resnet1d")(dim=8, in_channels=3, width=8, **options).eval()


@pytest.mark.parametrize("stride", [1, 4, 16])
def test_tokens_are_one_per_stride_samples_and_padding_is_masked(stride):
    encoder = _encoder(stride=stride)
    samples = [Sample("a", "g", {"x": torch.randn(100, 3)}), Sample("b", "g", {"x": torch.randn(37, 3)}), Sample("c", "g", {"x": None})]
    mb = collate_samples(samples, {"x": "padded"}).inputs["x"]
    out = encoder(mb)
    T = -(-100 // stride)
    assert out.tokens.shape == (3, T, 8)
    assert out.token_mask[0].all() and out.token_mask[1].sum() == -(-37 // stride) and not out.token_mask[2].any()
    alone = encoder(collate_samples(samples[1:2], {"x": "fixed"}).inputs["x"])
    T_b = -(-37 // stride)
    assert torch.allclose(out.tokens[1, :T_b], alone.tokens[0], atol=1e-5), "padding must not change a signal's tokens"
    assert torch.allclose(out.pooled[1], alone.pooled[0], atol=1e-5)


def test_a_local_change_moves_the_token_at_its_time_most():
    """Tokens stay time-aligned: a burst at sample s changes token s // stride most (the per-sample
    normalisation uses whole-signal statistics, so far tokens move a little too)."""
    from mmapps.data.sample import ModalityBatch

    encoder = _encoder(stride=8)
    x = torch.randn(1, 512, 3)
    a = encoder(ModalityBatch(x, torch.ones(1, dtype=torch.bool))).tokens
    for start in (40, 200, 480):
        y = x.clone()
        y[:, start : start + 8] += 4.0
        b = encoder(ModalityBatch(y, torch.ones(1, dtype=torch.bool))).tokens
        change = (a - b).norm(dim=-1)[0]  # (T,)
        assert abs(int(change.argmax()) - start // 8) <= 1, (start, change.argmax())


def test_windowed_signals_give_one_token_per_window_and_wrong_channels_are_named():
    from mmapps.data.sample import ModalityBatch

    encoder = _encoder(stride=4)
    mb = ModalityBatch(torch.randn(2, 5, 40, 3), torch.tensor([True, False]), mask=torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    out = encoder(mb)
    assert out.tokens.shape == (2, 5, 8) and out.token_mask.tolist() == [[True, True, True, False, False], [False] * 5]
    with pytest.raises(ValueError, match="inputs have 4 channels in the last axis, the encoder was built for in_channels=3"):
        encoder(ModalityBatch(torch.randn(2, 40, 4), torch.ones(2, dtype=torch.bool)))
    with pytest.raises(ValueError, match="stride must be a power of two"):
        _encoder(stride=6)
