"""Medical domain: DICOM chest radiographs + clinical notes -> the 14 CheXpert findings.

Everything heavy (pydicom, MONAI, torch) is referenced lazily as ``"module:attribute"`` strings.
See docs/medical.md for the data formats, the recipes and the flags.
"""

from __future__ import annotations

from mmapps.domain import Domain, ModalitySpec, TaskSpec, TrainFlag

FINDINGS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)  # kept literal here so importing the domain stays light; equals labels.CHEXPERT_FINDINGS

_TEXT = {"name": "text_transformer", "options": {"finetune": "frozen", "max_length": 96}}

RECIPES = {
    # CPU demo: ResNet-18 at 128 px + frozen MiniLM tokens + attention fusion; < 10 min on 2 cores.
    "default": {
        "data": {"demo_n": 200, "options": {"image_size": 128, "max_images": 2}},
        "model": {
            "dim": 128,
            "encoders": {"image": {"name": "image_cnn", "options": {"backbone": "resnet18", "in_channels": 1}}, "note": _TEXT},
            # modality dropout trains each branch to stand alone, so the image learns image-only findings
            "fusion": {"name": "attention", "modality_dropout": 0.25},
        },
        "train": {"epochs": 10, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4, "patience": 6},
        "eval": {"bootstrap_resamples": 1000},
    },
    # GPU: MONAI-style DenseNet121 at 256 px (224-320 px is the usual range), larger batches.
    "gpu": {
        "data": {"num_workers": 4, "options": {"image_size": 256, "max_images": 2}},
        "model": {
            "dim": 256,
            "encoders": {"image": {"name": "image_cnn", "options": {"backbone": "densenet121", "in_channels": 1}}, "note": _TEXT},
            "fusion": {"name": "attention"},
        },
        "train": {"epochs": 30, "batch_size": 32, "lr": 3e-4, "weight_decay": 1e-4, "patience": 8, "device": "cuda"},
    },
    # Tiny end-to-end check: < 1 minute.
    "smoke": {
        "data": {"demo_n": 24, "options": {"image_size": 48, "max_images": 2}},
        "model": {
            "dim": 32,
            "encoders": {"image": {"name": "image_cnn", "options": {"backbone": "small_cnn", "in_channels": 1, "width": 8}},
                         "note": {"name": "text_transformer", "options": {"finetune": "frozen", "max_length": 48}}},
            "fusion": {"name": "attention"},
        },
        "train": {"epochs": 1, "batch_size": 8},
        "eval": {"bootstrap_resamples": 50},
    },
    # The benchmark's recipe (every fusion and both single-modality baselines over seeds): the default
    # model with fewer bootstrap resamples. A small CNN at 96 px was tried and is too weak for the
    # image-only findings (image-only macro AUROC 0.61), so every fusion only matched the note.
    "quick": {
        "data": {"demo_n": 200, "options": {"image_size": 128, "max_images": 2}},
        "model": {
            "dim": 128,
            "encoders": {"image": {"name": "image_cnn", "options": {"backbone": "resnet18", "in_channels": 1}}, "note": _TEXT},
            "fusion": {"name": "attention", "modality_dropout": 0.25},
        },
        "train": {"epochs": 10, "batch_size": 16, "lr": 1e-3, "weight_decay": 1e-4, "patience": 6},
        "eval": {"bootstrap_resamples": 200},
    },
}

domain = Domain(
    name="medical",
    description="DICOM chest X-rays + clinical notes -> CheXpert findings (AUROC with patient-bootstrap CIs, calibration, Grad-CAM)",
    modalities=(
        ModalitySpec("image", "image", "DICOM CR/DX via pydicom + pylibjpeg/pyjpegls (every transfer syntax they decode)", layout="padded"),
        ModalitySpec("note", "text", "plain-text note or report; INDICATION + HISTORY by default", layout="text"),
    ),
    tasks=(
        TaskSpec(
            name="findings",
            head="multilabel",
            labels=FINDINGS,
            losses={"bce": ("mmapps_domains.medical.losses:FindingsBCE", 1.0)},
            postprocess="mmapps.tasks.postprocess:sigmoid_scores",
            metrics="mmapps_domains.medical.metrics:findings_metrics",
            primary_metric="auroc/macro",
            bootstrap_metric="mmapps_domains.medical.metrics:macro_auroc_resampler",
            labels_option="findings",  # --set 'data.options.findings=[...]' sizes the head and names the columns
        ),
    ),
    build_datasets="mmapps_domains.medical.dataset:build_datasets",
    write_demo_data="mmapps_domains.medical.demo:write_demo_data",
    demo_version=2,  # v2: manifest note_path / note_kind columns (v1's ambiguous note column is refused)
    recipes=RECIPES,
    write_predictions="mmapps_domains.medical.predictions:write_findings_csv",
    report_sections=("mmapps_domains.medical.report:findings_sections",),
    extra_commands="mmapps_domains.medical.commands:add_commands",
    serve="mmapps_domains.medical.serve:HOOKS",
    intended_use="decision support for trained readers of chest radiographs; never an autonomous diagnosis",
    data_options="mmapps_domains.medical.options:MedicalDataOptions",
    headline_metrics=(
        "auroc/macro", "auroc/micro", "auroc/competition5", "auprc/macro", "ece/macro",
        "sens/macro", "spec/macro", "ppv/macro", "npv/macro", "f1/macro", "pointing_game/*",
    ),
    train_flags=(
        TrainFlag(
            "allow-report-leakage",
            "data.options.allow_report_leakage",
            "allow FINDINGS / IMPRESSION as model input (the labels were extracted from them); the report says so first",
        ),
    ),
    install_hint="pip install mmapps  (needs pydicom, pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls, monai)",
)
