"""The `ecg` domain: 12-lead ECG waveforms + a triage note -> 5 multi-label diagnostic superclasses.

The data layout is PTB-XL's (Wagner et al., 2020; physionet.org/content/ptb-xl): ``ptbxl_database.csv``
(one row per ECG: ``ecg_id``, ``patient_id``, ``scp_codes``, ``strat_fold``, ``filename_lr`` /
``filename_hr``), ``scp_statements.csv`` (SCP code -> ``diagnostic_class``) and the WFDB records
under ``records100/`` (100 Hz) or ``records500/``. Labels are PTB-XL's diagnostic superclasses
NORM, MI, STTC, CD, HYP; folds 1-8 train, 9 validation, 10 test (the dataset's recommendation).
Only `mmapps.domain` is imported here, so discovery stays instant.
"""

from mmapps.domain import Domain, ModalitySpec, TaskSpec

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")

_MODEL = {
    "dim": 32,
    "encoders": {
        "ecg": {"name": "signal_resnet1d", "options": {"in_channels": 12, "width": 16, "stride": 16}},
        "note": {"name": "text_transformer", "options": {"finetune": "frozen", "max_length": 48}},
    },
    "fusion": {"name": "attention", "options": {"layers": 1, "heads": 2}},
}

domain = Domain(
    name="ecg",
    description="12-lead ECG (WFDB, PTB-XL layout) + triage note -> diagnostic superclasses NORM/MI/STTC/CD/HYP",
    modalities=(
        ModalitySpec("ecg", "signal", reader="WFDB records (wfdb.rdrecord), 12 leads, 10 s at data.options.fs", layout="fixed", optional=False),
        ModalitySpec("note", "text", reader="ptbxl_database.csv column data.options.note_column", layout="text"),
    ),
    tasks=(
        TaskSpec(
            name="diagnosis",
            head="multilabel",
            labels=SUPERCLASSES,
            losses={"bce": ("mmapps.tasks.losses:AutoPosWeightBCE", 1.0)},
            postprocess="mmapps.tasks.postprocess:sigmoid_scores",
            metrics="mmapps.tasks.metrics:multilabel_metrics",
            primary_metric="auroc/macro",
        ),
    ),
    build_datasets="mmapps_ecg.data:build_datasets",
    write_demo_data="mmapps_ecg.demo:write_demo_data",
    write_predictions="mmapps_ecg.data:write_predictions",
    data_options="mmapps_ecg.ptbxl:EcgDataOptions",
    headline_metrics=("auroc/macro", "auroc/micro", "auprc/macro", "auroc/NORM", "auroc/MI", "auroc/STTC", "auroc/CD", "auroc/HYP"),
    recipes={
        "default": {"data": {"demo_n": 600}, "model": _MODEL, "train": {"epochs": 15, "batch_size": 32, "lr": 3e-3}},
        "quick": {"data": {"demo_n": 300}, "model": _MODEL, "train": {"epochs": 8, "batch_size": 32, "lr": 3e-3}, "eval": {"bootstrap_resamples": 200}},
        "smoke": {"data": {"demo_n": 40}, "model": _MODEL, "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3}, "eval": {"bootstrap_resamples": 30}},
    },
    install_hint="pip install mmapps-ecg",
)
