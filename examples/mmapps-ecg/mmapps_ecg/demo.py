"""Demo data in PTB-XL's layout: WFDB records written by ``wfdb.wrsamp``, the two index CSVs, triage notes.

Each synthetic 10 s, 100 Hz, 12-lead ECG is a train of P-QRS-T beats whose morphology follows its
superclasses (MI: pathological Q and ST elevation in V1-V4; STTC: inverted T in the lateral leads;
CD: wide QRS; HYP: tall QRS in V1/V5; NORM: none), plus baseline wander and noise. Notes mention
symptoms that only partly agree with the labels, so both modalities help.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mmapps_ecg import SUPERCLASSES
from mmapps_ecg.ptbxl import LEADS

FS, SECONDS, ADC_GAIN = 100, 10, 1000.0
STATEMENTS = {"NORM": "NORM", "IMI": "MI", "AMI": "MI", "NDT": "STTC", "ISC_": "STTC", "CLBBB": "CD", "IRBBB": "CD", "LVH": "HYP", "RVH": "HYP"}
CODES = {"MI": ("IMI", "AMI"), "STTC": ("NDT", "ISC_"), "CD": ("CLBBB", "IRBBB"), "HYP": ("LVH", "RVH")}
SYMPTOMS = {"MI": "chest pain radiating to the left arm", "STTC": "intermittent chest tightness", "CD": "dizziness and a slow pulse", "HYP": "long-standing hypertension"}


def _bump(t: np.ndarray, centre: float, width: float, height: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((t - centre) / width) ** 2)


def synth_ecg(labels: set[str], rng: np.random.Generator) -> np.ndarray:
    """(S, 12) millivolts for one record with the given superclasses."""
    t = np.arange(FS * SECONDS) / FS
    rr = 60.0 / rng.uniform(55, 95)
    beats = np.arange(rng.uniform(0, rr) - rr, SECONDS + rr, rr)
    nearest = beats[np.clip(np.searchsorted(beats, t - rr / 2), 0, len(beats) - 1)]
    u = t - nearest  # time since the nearest R peak, in (-rr/2, rr/2]
    qrs_width = 0.035 if "CD" in labels else 0.012
    signal = np.zeros((len(t), len(LEADS)))
    for k, lead in enumerate(LEADS):
        r = 2.2 if "HYP" in labels and lead in ("V1", "V5") else 1.0
        wave = _bump(u, -0.16, 0.025, 0.12) + _bump(u, 0.0, qrs_width, r) - _bump(u, 0.03, 0.01, 0.15)
        wave += _bump(u, 0.28, 0.05, -0.25 if "STTC" in labels and lead in ("I", "AVL", "V5", "V6") else 0.25)
        if "MI" in labels and lead in ("V1", "V2", "V3", "V4"):
            wave += -_bump(u, -0.03, 0.012, 0.35) + _bump(u, 0.14, 0.07, 0.2)
        signal[:, k] = rng.uniform(0.6, 1.4) * (-1.0 if lead == "AVR" else 1.0) * wave
    wander = 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    return signal + wander[:, None] + rng.normal(0, 0.03, signal.shape)


def _note(labels: set[str], rng: np.random.Generator) -> str:
    said = [SYMPTOMS[c] for c in sorted(labels - {"NORM"}) if rng.random() < 0.7]
    if rng.random() < 0.15:
        said.append(SYMPTOMS[str(rng.choice(list(SYMPTOMS)))])  # a symptom the ECG does not explain
    age = int(rng.integers(25, 90))
    return f"{age} y/o presenting with " + (", ".join(sorted(set(said))) if said else "palpitations, otherwise well") + "."


def write_demo_data(out: Path, n: int, seed: int = 0) -> Path:
    """Write `n` records under ``out/records100/`` with ``ptbxl_database.csv`` and ``scp_statements.csv``; returns `out`."""
    import wfdb

    rng = np.random.default_rng(seed)
    out = Path(out)
    with (out / "scp_statements.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "description", "diagnostic", "diagnostic_class"])
        writer.writerows([code, code.lower(), 1.0, cls] for code, cls in STATEMENTS.items())
        writer.writerow(["SR", "sinus rhythm", "", ""])  # a rhythm statement: not diagnostic, ignored
    rows = []
    for i in range(1, n + 1):
        labels = {c for c in SUPERCLASSES[1:] if rng.random() < 0.25} or {"NORM"}
        codes = {str(rng.choice(CODES[c])) if c != "NORM" else "NORM": float(rng.choice([50.0, 80.0, 100.0])) for c in labels}
        codes["SR"] = 0.0
        folder = out / "records100" / f"{(i // 1000) * 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{i:05d}_lr"
        digital = np.round(synth_ecg(labels, rng) * ADC_GAIN).astype(np.int16)  # PTB-XL's 1 µV resolution
        wfdb.wrsamp(name, fs=FS, units=["mV"] * len(LEADS), sig_name=list(LEADS), d_signal=digital, fmt=["16"] * len(LEADS),
                    adc_gain=[ADC_GAIN] * len(LEADS), baseline=[0] * len(LEADS), write_dir=str(folder))  # fmt: skip
        fold = 1 + i % 10  # every split gets records, however small n is
        rows.append([i, 1000 + i // 2, repr(codes), fold, f"records100/{folder.name}/{name}", f"records500/{folder.name}/{i:05d}_hr", _note(labels, rng)])
    with (out / "ptbxl_database.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr", "triage_note"])
        writer.writerows(rows)
    return out
