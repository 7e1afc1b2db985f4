"""The `shapes` domain: a complete, minimal mmapps plugin (see docs/plugins.md).

Each sample is a 32x32 PNG (a round or an angular shape) and a row of six measurements; the
class needs both: the image says round/angular, the measurements say small/large.
Only the dataclasses of `mmapps.domain` are imported here, so discovery stays instant.
"""

from mmapps.domain import Domain, ModalitySpec, TaskSpec

CLASSES = ("small-round", "large-round", "small-angular", "large-angular")

_MODEL = {
    "dim": 32,
    "encoders": {
        "image": {"name": "image_cnn", "options": {"backbone": "small_cnn", "in_channels": 1, "width": 8}},
        "measurements": {"name": "tabular_mlp", "options": {"in_features": 6, "hidden": 32}},
    },
    "fusion": {"name": "attention", "options": {"layers": 1, "heads": 2}},
}

domain = Domain(
    name="shapes",
    description="Example plugin: PNG shape images + CSV measurements -> shape class",
    modalities=(
        ModalitySpec("image", "image", reader="PNG (Pillow), grayscale", layout="fixed"),
        ModalitySpec("measurements", "tabular", reader="CSV columns f0..f5", layout="fixed"),
    ),
    tasks=(
        TaskSpec(
            name="shape",
            head="multiclass",
            labels=CLASSES,
            losses={"cross_entropy": ("mmapps.tasks.losses:multiclass_cross_entropy", 1.0)},
            postprocess="mmapps.tasks.postprocess:softmax_scores",
            metrics="mmapps.tasks.metrics:multiclass_metrics",
            primary_metric="accuracy",
        ),
    ),
    build_datasets="mmapps_shapes.data:build_datasets",
    write_demo_data="mmapps_shapes.data:write_demo_data",
    recipes={
        "default": {"data": {"demo_n": 600}, "model": _MODEL, "train": {"epochs": 20, "batch_size": 32, "lr": 3e-3}},
        "quick": {"data": {"demo_n": 300}, "model": _MODEL, "train": {"epochs": 10, "batch_size": 32, "lr": 3e-3}, "eval": {"bootstrap_resamples": 200}},
        "smoke": {"data": {"demo_n": 80}, "model": _MODEL, "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3}, "eval": {"bootstrap_resamples": 50}},
    },
    install_hint="pip install mmapps-shapes",
)
