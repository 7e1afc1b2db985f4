"""What the template writes for each task kind: the TaskSpec refs, the target columns and their parsing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskTemplate:
    """The template of one task kind.

    Attributes:
        head: the `mmapps.registry.HEADS` name.
        loss: (loss name, lazy ref) of `TaskSpec.losses`.
        postprocess: lazy ref of `TaskSpec.postprocess`.
        metrics: lazy ref of `TaskSpec.metrics`.
        primary_metric: `TaskSpec.primary_metric`.
        higher_is_better: `TaskSpec.higher_is_better`.
        default_labels: label names when the user gives none.
        demo: source of ``demo_target(rng) -> (signal, columns)`` of the generated ``data.py``.
        parse: source of ``parse_target(row) -> Tensor | None`` (None: the row is unlabelled).
    """

    head: str
    loss: tuple[str, str]
    postprocess: str
    metrics: str
    primary_metric: str
    higher_is_better: bool
    default_labels: tuple[str, ...]
    demo: str
    parse: str

    @property
    def label_columns(self) -> bool:
        """True when each label is its own column of ``samples.csv`` (else one ``label`` column)."""
        return self.head != "multiclass"


MULTICLASS = TaskTemplate(
    head="multiclass",
    loss=("cross_entropy", "mmapps.tasks.losses:multiclass_cross_entropy"),
    postprocess="mmapps.tasks.postprocess:softmax_scores",
    metrics="mmapps.tasks.metrics:multiclass_metrics",
    primary_metric="accuracy",
    higher_is_better=True,
    default_labels=("class-a", "class-b", "class-c"),
    demo='''def demo_target(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """One class drawn uniformly: its one-hot vector drives the demo files."""
    label = int(rng.integers(len(LABELS)))
    return np.eye(len(LABELS))[label], {"label": LABELS[label]}


''',
    parse='''def parse_target(row: dict[str, str]) -> torch.Tensor | None:
    """The ``label`` column -> class index (an empty cell: unlabelled row)."""
    name = (row.get("label") or "").strip()
    if not name:
        return None
    if name not in LABELS:
        raise ValueError(f"label: found {name!r}, expected one of {', '.join(LABELS)}")
    return torch.tensor(LABELS.index(name))


''',
)

MULTILABEL = TaskTemplate(
    head="multilabel",
    loss=("bce", "mmapps.tasks.losses:multilabel_bce"),
    postprocess="mmapps.tasks.postprocess:sigmoid_scores",
    metrics="mmapps.tasks.metrics:multilabel_metrics",
    primary_metric="auroc/macro",
    higher_is_better=True,
    default_labels=("finding-a", "finding-b", "finding-c"),
    demo='''def demo_target(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """Each label present with probability 0.4; one label cell in twenty left empty (unknown)."""
    present = (rng.random(len(LABELS)) < 0.4).astype(float)
    return present, {name: "" if rng.random() < 0.05 else str(int(v)) for name, v in zip(LABELS, present)}


''',
    parse='''def parse_target(row: dict[str, str]) -> torch.Tensor | None:
    """One 0/1 column per label -> (L,) float; an empty cell is unknown (NaN, masked from loss and metrics)."""
    cells = [(row.get(name) or "").strip() for name in LABELS]
    if not any(cells):
        return None
    bad = [f"{name}={cell!r}" for name, cell in zip(LABELS, cells) if cell not in ("", "0", "1")]
    if bad:
        raise ValueError(f"label: found {', '.join(bad)}, expected 0, 1 or an empty cell (unknown)")
    return torch.tensor([float(cell) if cell else float("nan") for cell in cells])


''',
)

REGRESSION = TaskTemplate(
    head="regression",
    loss=("mse", "mmapps.tasks.losses:mean_squared_error"),
    postprocess="mmapps.tasks.postprocess:regression_values",
    metrics="mmapps.tasks.metrics:regression_metrics",
    primary_metric="mae",
    higher_is_better=False,
    default_labels=("value",),
    demo='''def demo_target(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """Each target uniform in [0, 1]; the demo files encode it."""
    values = rng.random(len(LABELS))
    return values, {name: f"{v:.4f}" for name, v in zip(LABELS, values)}


''',
    parse='''def parse_target(row: dict[str, str]) -> torch.Tensor | None:
    """One number column per target -> (L,) float; an empty cell is unknown (NaN, masked)."""
    cells = [(row.get(name) or "").strip() for name in LABELS]
    if not any(cells):
        return None
    try:
        return torch.tensor([float(cell) if cell else float("nan") for cell in cells])
    except ValueError:
        raise ValueError(f"target: found {cells}, expected numbers or empty cells (unknown)") from None


''',
)

TASKS: dict[str, TaskTemplate] = {"multiclass": MULTICLASS, "multilabel": MULTILABEL, "regression": REGRESSION}
