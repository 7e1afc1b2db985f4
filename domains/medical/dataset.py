"""Medical datasets: studies -> `mmapps.data.Sample` with images ``(E, 1, S, S)``, a note and 14 findings.

``build_datasets(cfg)`` reads the manifest or MIMIC-CXR layout under ``cfg.data.root`` (the demo
data when unset), splits by patient, checks every study (labels, note, images) through
`mmapps.data.IssueLog`, and returns `mmapps.data.DatasetSplits`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.labels import check_findings, encode_labels
from mmapps_domains.medical.notes import NoteRefusedError, read_note_file, select_note
from mmapps_domains.medical.options import MedicalDataOptions, parse_options
from mmapps_domains.medical.records import (
    StudyRecord,
    is_mimic_root,
    read_manifest,
    read_mimic_layout,
)

_VIEW_RANK = {"PA": 0, "AP": 1, "LATERAL": 2, "UNKNOWN": 3}


def age_band(age: float | None) -> str:
    """Age in years -> ``<40``, ``40-59``, ``60-79``, ``80+`` or ``unknown``."""
    if age is None:
        return "unknown"
    return "<40" if age < 40 else "40-59" if age < 60 else "60-79" if age < 80 else "80+"


@dataclass
class PreparedStudy:
    """A checked study: image paths (ordered frontal first), note text, target vector, metadata."""

    study_id: str
    subject_id: str
    image_paths: list[Path]
    note: str | None
    targets: np.ndarray
    meta: dict[str, Any]


class MedicalStudyDataset:
    """Map-style dataset of `PreparedStudy` -> `mmapps.data.Sample`.

    Args:
        studies: checked studies.
        load: ``path -> (array (1, S, S), metadata)`` (the cache in front of the preprocessing).
        augment: train-only random transform ``(array (1, S, S), rng) -> array``, or None.
        seed: run seed; each image's augmentation draws from (seed, epoch, study index, image index).
    """

    def __init__(self, studies: list[PreparedStudy], load: Callable[[Path], tuple[np.ndarray, dict]], augment: Callable | None = None, seed: int = 0) -> None:
        self.studies = studies
        self.load = load
        self.augment = augment
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer (in the worker that loads the item) before each epoch's items."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, index: int):
        import torch

        from mmapps.data import Sample

        study = self.studies[index]
        arrays = [self.load(path)[0] for path in study.image_paths]
        if self.augment is not None:
            from mmapps.data.rng import sample_rng

            arrays = [self.augment(a, sample_rng(self.seed, self.epoch, index, stream)) for stream, a in enumerate(arrays)]
        image = torch.from_numpy(np.stack(arrays))  # (E, 1, S, S)
        return Sample(
            sample_id=study.study_id,
            group_id=study.subject_id,
            inputs={"image": image, "note": study.note},
            targets={"findings": torch.from_numpy(study.targets.copy())},
            meta=dict(study.meta),
        )


def resolve_root(cfg: Any) -> Path:
    """``cfg.data.root``, or the demo data (written once into ``data.demo_dir``) when unset."""
    if cfg.data.root is not None:
        root = Path(cfg.data.root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data.root {root}: not found; give a manifest CSV, a folder holding one, or a MIMIC-CXR root")
        return root
    from mmapps_domains.medical.demo import write_demo_data

    demo = Path(cfg.data.demo_dir or Path.home() / ".cache" / "mmapps" / f"medical-demo-n{cfg.data.demo_n}-v2").expanduser()
    if not (demo / "manifest.csv").is_file():
        write_demo_data(demo, cfg.data.demo_n, seed=0)
    return demo


def index_records(root: Path, options: MedicalDataOptions) -> tuple[list[StudyRecord], dict[str, Any]]:
    """Read the study index under ``root`` (manifest CSV, folder with a manifest, or MIMIC-CXR)."""
    if root.is_file():
        return read_manifest(root, _labels_path(root.parent, options)), {"layout": "manifest", "manifest": str(root)}
    if (root / options.manifest).is_file():
        return read_manifest(root / options.manifest, _labels_path(root, options)), {"layout": "manifest", "manifest": str(root / options.manifest)}
    if is_mimic_root(root):
        records, counts = read_mimic_layout(root, options.mimic_labels)
        return records, {"layout": "mimic-cxr", **counts}
    raise FileNotFoundError(f"data.root {root}: neither {options.manifest} nor a MIMIC-CXR layout (files/ + mimic-cxr-2.0.0-chexpert.csv) found")


def _labels_path(base: Path, options: MedicalDataOptions) -> Path | None:
    return (base / options.labels_csv) if options.labels_csv else None


def _study_note(record: StudyRecord, options: MedicalDataOptions, log: Any, base: Path, fed: Counter) -> str | None:
    """The note input of a study; a refused or unreadable note is reported to ``log`` and the study kept without it."""
    source = record.note
    if source is None:
        fed["no note"] += 1
        return None
    where = f"study {record.study_id} ({record.where})"
    try:
        text = read_note_file(source.path, base) if source.path is not None else source.text
        chosen = select_note(text, options.note_sections, options.allow_report_leakage, source.kind, where)
    except NoteRefusedError as err:
        log.report(source.path or record.where, f"note refused (not clinical context): {err}")
        fed["refused (not fed)"] += 1
        return None
    except (ValueError, FileNotFoundError) as err:
        log.report(source.path or record.where, f"note unreadable: {err} ({where})")
        fed["unreadable (not fed)"] += 1
        return None
    fed[chosen.fed] += 1
    return chosen.text


def prepare_study(record: StudyRecord, options: MedicalDataOptions, load: Callable, log: Any, base: Path,
                  fed: Counter | None = None) -> PreparedStudy | None:
    """Check one study; report problems to ``log`` (skip or stop) and return None when unusable.

    A missing or unreadable image is reported and left out; the study keeps its readable images
    (the image modality is padded with an element mask) and is dropped only when none is left.
    A refused note is reported and the study kept without a note (``fed`` counts what each note gave).
    """
    try:
        targets = encode_labels(record.labels, options.findings, record.where, options.uncertain, options.blank)
    except ValueError as err:
        log.report(record.where, f"{err} (study {record.study_id})")
        return None
    note = _study_note(record, options, log, base, fed if fed is not None else Counter())
    images: list[tuple[int, Path, dict]] = []
    for path, known_view in zip(record.image_paths, record.views or [None] * len(record.image_paths)):
        if not path.is_file():
            log.report(path, f"image path does not exist (study {record.study_id}, {record.where})")
            continue
        meta: dict = {"view": known_view} if known_view else {}
        if options.validate_images:
            try:
                meta = load(path)[1]
            except (ValueError, FileNotFoundError) as err:
                log.report(path, f"{str(err).removeprefix(str(path) + ': ')} (study {record.study_id})")
                continue
        view = meta.get("view") or "UNKNOWN"
        view = "LATERAL" if view in ("LL", "RL", "LAT", "LATERAL") else view if view in _VIEW_RANK else "UNKNOWN"
        if options.views == "frontal" and view not in ("PA", "AP") or options.views == "lateral" and view != "LATERAL":
            continue
        images.append((_VIEW_RANK[view], path, {**meta, "view": view}))
    if not images:
        log.report(record.where, f"study {record.study_id} has no usable image (of {len(record.image_paths)} listed; views={options.views!r})")
        return None
    images.sort(key=lambda item: item[0])
    images = images[: options.max_images]
    first = images[0][2]
    meta = {
        "study_id": record.study_id, "view": first.get("view"), "views": [m.get("view") for _, _, m in images],
        "sex": first.get("sex"), "age": first.get("age"), "age_band": age_band(first.get("age")),
        "n_images": len(images), "has_note": note is not None,
    }
    return PreparedStudy(record.study_id, record.subject_id, [p for _, p, _ in images], note, targets, meta)


def describe_note_input(fed: Counter, options: MedicalDataOptions) -> str:
    """The report's leakage line: what the note input was, per note (e.g. "INDICATION+HISTORY sections: 180 notes, ...")."""
    parts = [f"{what}: {n} note(s)" if what != "no note" else f"no note: {n} stud(ies)" for what, n in fed.most_common()]
    leak = "report text allowed (--allow-report-leakage)" if options.allow_report_leakage else "clinical context only, no FINDINGS / IMPRESSION"
    return f"{leak}; " + ("; ".join(parts) or "no notes")


def check_splits_filled(by_split: dict[str, list[PreparedStudy]], records: list[StudyRecord], split_of_patient: dict[str, str],
                        root: Path, log: Any) -> None:
    """Raise a `DataError` (exit 3) when the test split is empty, naming what would fill it.

    (An empty train split is the core's error; an empty val split is allowed: no early stopping.)
    """
    from mmapps.errors import DataError

    for name in ("test",):
        if by_split[name]:
            continue
        listed = sum(1 for r in records if split_of_patient.get(r.subject_id) == name)
        given = any(r.split is not None for r in records)
        cause = (f"its {listed} listed stud(ies) were all skipped ({log.summary()})" if listed
                 else "the manifest's split column assigns no study to it" if given
                 else f"the {len(split_of_patient)} patient(s) are too few for data.options.split_fractions")
        fill = ("give some patients split=" + name + " in the manifest's split column (or the official MIMIC-CXR split file)" if given
                else "add patients, or change data.options.split_fractions (train, val, test)")
        raise DataError(f"data.root {root}: the {name} split is empty: {cause}; to fill it, {fill}")


def _prevalence(studies: list[PreparedStudy]) -> list[float | None]:
    if not studies:
        return []
    targets = np.stack([s.targets for s in studies])  # (N, L)
    known = ~np.isnan(targets)
    return [round(float(np.nansum(targets[:, j]) / known[:, j].sum()), 3) if known[:, j].any() else None for j in range(targets.shape[1])]


def build_datasets(cfg: Any):
    """Build the medical train / val / test datasets (the ``Domain.build_datasets`` contract).

    Args:
        cfg: `mmapps.config.RunConfig`; domain options in ``cfg.data.options`` (`MedicalDataOptions`).

    Returns:
        `mmapps.data.DatasetSplits` with ``split_of_group`` (subject_id -> split) and ``info``.

    Raises:
        mmapps.errors.DataError: when every study fails, or at the first failure under ``on_error=stop``.
    """
    from mmapps_domains.medical.cache import build_cached_preprocess
    from mmapps_domains.medical.patient_split import split_by_patient
    from mmapps_domains.medical.transforms import build_augment

    from mmapps.data import DatasetSplits, IssueLog
    from mmapps.errors import DataError

    options = parse_options(cfg.data.options)
    root = resolve_root(cfg)
    records, info = index_records(root, options)
    if records and isinstance(records[0].labels, dict):
        check_findings(options.findings, list(records[0].labels), records[0].where)
    load = build_cached_preprocess(cfg, options)  # the validation decode below fills the cache for epoch 1
    log = IssueLog(on_error=cfg.data.on_error)
    base = root if root.is_dir() else root.parent
    fed: Counter = Counter()
    studies = [s for s in (prepare_study(r, options, load, log, base, fed) for r in records) if s is not None]
    if not studies:
        raise DataError(f"data.root {root}: every one of {len(records)} studies failed ({log.summary()}); nothing to train on")
    from mmapps.data.splits import split_seed

    split_of_patient = split_by_patient(records, options.split_fractions, split_seed(cfg))
    by_split = {name: [s for s in studies if split_of_patient[s.subject_id] == name] for name in ("train", "val", "test")}
    check_splits_filled(by_split, records, split_of_patient, root, log)
    note_input = describe_note_input(fed, options)
    if options.allow_report_leakage:
        info["notes"] = [
            "REPORT LEAKAGE: the note input includes " + "/".join(s.upper() for s in options.note_sections)
            + " (--allow-report-leakage). The labels were extracted from these sections, so these metrics overstate what the model can do from the clinical context."
            + f" Fed: {note_input}."
        ]
    augment = build_augment(options.image_size) if options.augment else None
    info.update(
        data_root=str(root), studies={k: len(v) for k, v in by_split.items()}, findings=list(options.findings),
        uncertain_policy=options.uncertain, blank_policy=options.blank, note_sections=list(options.note_sections),
        report_leakage=options.allow_report_leakage, note_input=note_input, skipped=len(log), issues_summary=log.summary(), cache=load.describe(),
        prevalence={name: _prevalence(v) for name, v in by_split.items()},
    )
    return DatasetSplits(
        train=MedicalStudyDataset(by_split["train"], load, augment, seed=cfg.seed),
        val=MedicalStudyDataset(by_split["val"], load),
        test=MedicalStudyDataset(by_split["test"], load),
        issues=log,
        split_of_group={s: split_of_patient[s] for s in sorted({st.subject_id for st in studies})},
        info=info,
    )
