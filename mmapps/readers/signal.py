"""Multichannel 1-D signals (ECG, EEG, accelerometers, vital signs, CAN signals) from ``.npy``, CSV or WFDB.

Every reader returns a `SignalRecord` whose ``data`` is ``(S, C)`` float32, time first (the
``padded`` layout pads that axis for signals of different lengths; `mmapps.models.encoders.signal`
reads ``(B, S, C)``). Bad files raise `SignalReadError` (a `mmapps.errors.DataError`) naming the
file, what was found and what is accepted, so a dataset can hand it to its `IssueLog`.

- ``.npy``: a 2-D array ``(S, C)`` (or ``(C, S)`` with ``channels_first=True``), read with
  ``allow_pickle=False``; the rate and channel names are given by the caller.
- ``.csv``: a header row of channel names, one row per sample; a first column named ``time``,
  ``t``, ``time_s`` or ``seconds`` gives the rate (and is not a channel), else the caller gives it.
- WFDB (PhysioNet): a record's ``.hea`` header (and its ``.dat`` files), read by ``wfdb.rdrecord``
  in physical units; the header gives rate, channel names and units. Give the ``.hea`` path or the
  record path without suffix (as PTB-XL's ``filename_lr`` column does).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mmapps.errors import DataError

SUFFIXES = (".npy", ".csv", ".hea")
TIME_COLUMNS = ("time", "t", "time_s", "seconds")


class SignalReadError(DataError):
    """A signal file that cannot be used: missing, unreadable, wrong shape, non-finite, wrong channels or rate."""


@dataclass
class SignalRecord:
    """One multichannel signal.

    Attributes:
        data: ``(S, C)`` float32 samples, time first.
        fs: sampling rate in Hz.
        channels: channel names, in column order.
        units: unit per channel (``mV``...; empty when unknown).
        meta: reader-specific extras (WFDB comments, the original rate before resampling).
    """

    data: np.ndarray
    fs: float
    channels: list[str]
    units: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def read_signal(
    path: Path | str,
    fs: float | None = None,
    channels: Sequence[str] | None = None,
    target_fs: float | None = None,
    channels_first: bool = False,
) -> SignalRecord:
    """Read a signal by suffix (``.npy``, ``.csv``, ``.hea`` or a WFDB record path without suffix).

    Args:
        path: the file (or WFDB record base path).
        fs: sampling rate of a ``.npy`` file (required there); for CSV and WFDB it is checked
            against the file's rate when given.
        channels: channel names to keep, in this order (missing ones are an error naming those present).
        target_fs: resample to this rate (polyphase, anti-aliased) when the file's rate differs.
        channels_first: a ``.npy`` array is ``(C, S)``.

    Raises:
        SignalReadError: naming the file and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        record = read_npy_signal(path, fs, channels_first)
    elif suffix == ".csv":
        record = read_csv_signal(path, fs)
    elif suffix in (".hea", ".dat", "") or not path.exists():
        record = read_wfdb_signal(path)
    else:
        raise SignalReadError(f"{path}: unknown signal file suffix {path.suffix!r}; accepted: .npy, .csv, or a WFDB record (.hea, or its path without suffix)")
    if fs is not None and suffix not in (".npy", ".csv") and abs(record.fs - fs) > 1e-6:
        raise SignalReadError(f"{path}: sampling rate {record.fs:g} Hz, expected {fs:g} Hz (set target_fs to resample)")
    record = select_channels(record, channels, path) if channels is not None else record
    return resample(record, target_fs) if target_fs is not None and abs(record.fs - target_fs) > 1e-6 else record


def read_npy_signal(path: Path, fs: float | None, channels_first: bool = False) -> SignalRecord:
    """A ``.npy`` array of shape ``(S, C)`` (or ``(C, S)``); never unpickles."""
    if fs is None or fs <= 0:
        raise SignalReadError(f"{path}: a .npy signal carries no sampling rate; give fs (Hz) to the reader")
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SignalReadError(f"{path}: signal file not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise SignalReadError(f"{path}: not a readable .npy array ({err}); expected a numeric (S, C) array saved with numpy.save") from None
    if array.dtype.kind not in "iuf" or array.ndim not in (1, 2):
        raise SignalReadError(f"{path}: found a {array.ndim}-D {array.dtype} array of shape {array.shape}; expected a numeric (samples, channels) array")
    array = array[:, None] if array.ndim == 1 else (array.T if channels_first else array)
    return _checked(SignalRecord(array.astype(np.float32), float(fs), [f"ch{i}" for i in range(array.shape[1])]), path)


def read_csv_signal(path: Path, fs: float | None = None) -> SignalRecord:
    """A CSV with a header of channel names; a leading time column in seconds gives the rate, else `fs` does.

    With both, they must agree.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise SignalReadError(f"{path}: signal file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SignalReadError(f"{path}: cannot read the CSV ({err})") from None
    if len(rows) < 3:
        raise SignalReadError(f"{path}: {len(rows)} line(s); expected a header of channel names and at least two rows of samples")
    header = [h.strip() for h in rows[0]]
    try:
        values = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError:
        bad = next(i for i, row in enumerate(rows[1:], start=2) if row and not all(_is_number(v) for v in row))
        raise SignalReadError(f"{path}:{bad}: a non-numeric value in {rows[bad - 1][:6]}; expected one number per channel (empty or text cells are not accepted)") from None
    except Exception:  # ragged rows make numpy refuse the nested list
        raise SignalReadError(f"{path}: rows of different lengths; expected {len(header)} values per row like the header") from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise SignalReadError(f"{path}: rows of {values.shape[-1] if values.ndim == 2 else '?'} values under a header of {len(header)} columns")
    meta: dict = {}
    if header[0].lower() in TIME_COLUMNS:
        steps = np.diff(values[:, 0])
        if not (steps > 0).all() or np.ptp(steps) > 1e-3 * steps.mean():
            raise SignalReadError(f"{path}: column {header[0]!r} is not evenly spaced increasing time in seconds; cannot tell the sampling rate")
        file_fs, values, header = round(1.0 / float(steps.mean()), 6), values[:, 1:], header[1:]
        if fs is not None and abs(file_fs - fs) > 1e-3 * fs:
            raise SignalReadError(f"{path}: the time column gives {file_fs:g} Hz, expected {fs:g} Hz")
        fs = file_fs
    elif fs is None or fs <= 0:
        raise SignalReadError(f"{path}: no time column (first column one of {', '.join(TIME_COLUMNS)}, in seconds) and no fs given; cannot tell the sampling rate")
    if not header:
        raise SignalReadError(f"{path}: no channel column after the time column")
    return _checked(SignalRecord(values.astype(np.float32), float(fs), header, meta=meta), path)


def read_wfdb_signal(path: Path) -> SignalRecord:
    """A WFDB record in physical units via ``wfdb.rdrecord`` (header: rate, channel names, units)."""
    base = path.with_suffix("") if path.suffix.lower() in (".hea", ".dat") else path
    if not base.with_suffix(".hea").is_file():
        raise SignalReadError(f"{base.with_suffix('.hea')}: WFDB header not found; give a record's .hea file (its .dat files beside it) or its path without suffix")
    try:
        import wfdb
    except ImportError:
        raise SignalReadError(f"{path}: reading WFDB records needs the wfdb package: pip install 'mmapps[signal]'") from None
    try:
        record = wfdb.rdrecord(str(base))
    except Exception as err:  # wfdb raises many types (ValueError, FileNotFoundError, struct errors) on bad records
        raise SignalReadError(f"{base}: not a readable WFDB record ({type(err).__name__}: {err})") from None
    if record.p_signal is None or record.p_signal.ndim != 2:
        raise SignalReadError(f"{base}: the WFDB record holds no single-frequency signal matrix (multi-frequency records are not accepted)")
    meta = {"comments": list(record.comments or [])}
    return _checked(SignalRecord(record.p_signal.astype(np.float32), float(record.fs), list(record.sig_name), list(record.units or []), meta), base)


def select_channels(record: SignalRecord, channels: Sequence[str], path: Path) -> SignalRecord:
    """Keep `channels` in that order (case-insensitive names)."""
    index = {name.lower(): i for i, name in enumerate(record.channels)}
    missing = [c for c in channels if c.lower() not in index]
    if missing:
        raise SignalReadError(f"{path}: channel(s) {missing} not in the file; it has {record.channels}")
    order = [index[c.lower()] for c in channels]
    units = [record.units[i] for i in order] if record.units else []
    return SignalRecord(record.data[:, order], record.fs, [record.channels[i] for i in order], units, record.meta)


def resample(record: SignalRecord, target_fs: float) -> SignalRecord:
    """Polyphase resampling (scipy ``resample_poly``, anti-aliasing filter included) to `target_fs`."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(target_fs / record.fs).limit_denominator(1000)
    data = resample_poly(record.data, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)
    return SignalRecord(data, float(target_fs), record.channels, record.units, {**record.meta, "original_fs": record.fs})


def _checked(record: SignalRecord, path: Path) -> SignalRecord:
    if record.data.shape[0] < 2 or record.data.shape[1] < 1:
        raise SignalReadError(f"{path}: {record.data.shape[0]} sample(s) x {record.data.shape[1]} channel(s); expected at least 2 samples of 1 channel")
    bad = ~np.isfinite(record.data)
    if bad.any():
        per_channel = bad.sum(0)
        named = ", ".join(f"{record.channels[i]}: {int(n)}" for i, n in enumerate(per_channel) if n)
        raise SignalReadError(f"{path}: {int(bad.sum())} NaN/infinite sample(s) ({named}); a signal must be finite (WFDB marks invalid samples this way)")
    return record


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
