"""The parsed ``mmapps new-domain`` request: names, modalities, task, labels."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from mmapps.errors import ConfigError
from mmapps.scaffold.kinds import KINDS, KindTemplate
from mmapps.scaffold.tasks import TASKS, TaskTemplate

NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED = {"domains", "cache", "parts", "new-domain", "new_domain", "sample_id", "group_id", "split", "label"}


@dataclass(frozen=True)
class ModalityRequest:
    name: str
    template: KindTemplate


@dataclass(frozen=True)
class PluginSpec:
    """What to generate.

    Attributes:
        name: the domain name (CLI name, entry-point name, ``Domain.name``).
        modalities: in the order given.
        task_kind: multiclass, multilabel or regression.
        task: the task template.
        labels: label (class, finding, target) names.
    """

    name: str
    modalities: tuple[ModalityRequest, ...]
    task_kind: str
    task: TaskTemplate
    labels: tuple[str, ...]
    task_name: str
    description: str

    @property
    def package(self) -> str:
        return f"mmapps_{self.name}"

    @property
    def distribution(self) -> str:
        return f"mmapps-{self.name.replace('_', '-')}"


DEFAULT_TASK_NAMES = {"multiclass": "label", "multilabel": "labels", "regression": "target"}


def parse_spec(name: str, modalities: str, task: str, labels: str | None = None, task_name: str | None = None, description: str | None = None) -> PluginSpec:
    """Check and parse the ``new-domain`` arguments.

    Args:
        name: lower-case identifier (``ecg``, ``retina_oct``).
        modalities: comma-separated ``name[:kind]`` items (``image,note:text,vitals:tabular``);
            a bare kind names a modality after its kind.
        task: multiclass, multilabel or regression.
        labels: comma-separated label names; default: the task kind's placeholders.
        task_name: the task's name (key of targets and outputs); default label / labels / target.
        description: the one line of ``mmapps domains``.

    Raises:
        ConfigError: naming the argument, the value found and what is accepted.
    """
    if not NAME.match(name) or keyword.iskeyword(name) or name in RESERVED:
        raise ConfigError(f"NAME {name!r}: expected a lower-case identifier (letters, digits, _; starting with a letter, not a Python keyword nor {sorted(RESERVED)}), e.g. ecg or retina_oct")
    if task not in TASKS:
        raise ConfigError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
    requests: list[ModalityRequest] = []
    for item in [part.strip() for part in modalities.split(",") if part.strip()]:
        modality, _, kind = item.partition(":")
        kind = kind or modality
        if kind not in KINDS:
            raise ConfigError(f"--modalities {item!r}: kind {kind!r} has no template; templates exist for {', '.join(KINDS)} (write NAME:KIND, e.g. note:text)")
        if not NAME.match(modality) or modality in RESERVED or keyword.iskeyword(modality):
            raise ConfigError(f"--modalities {item!r}: modality name {modality!r} must be a lower-case identifier and not one of {sorted(RESERVED)}")
        requests.append(ModalityRequest(modality, KINDS[kind]))
    names = [r.name for r in requests]
    if not requests or len(set(names)) != len(names):
        raise ConfigError(f"--modalities {modalities!r}: expected one or more distinct modalities, e.g. image,note:text")
    label_names = tuple(part.strip() for part in labels.split(",") if part.strip()) if labels else TASKS[task].default_labels
    clash = set(label_names) & ({"sample_id", "group_id", "split", "label"} | set(names) | {c for r in requests for c in _columns(r)})
    if not label_names or len(set(label_names)) != len(label_names) or clash or any("," in x or '"' in x for x in label_names):
        raise ConfigError(f"--labels {labels!r}: expected distinct names that are not also column names ({sorted(clash) or 'none clash'}), e.g. --labels normal,mi,sttc")
    if task == "multiclass" and len(label_names) < 2:
        raise ConfigError(f"--labels {labels!r}: a multiclass task needs at least two classes")
    task_name = task_name or DEFAULT_TASK_NAMES[task]
    if not NAME.match(task_name):
        raise ConfigError(f"--task-name {task_name!r}: expected a lower-case identifier, e.g. diagnosis")
    kinds = " + ".join(f"{r.name} ({r.template.kind})" for r in requests)
    description = description or f"{name}: {kinds} -> {task_name} ({task}, {len(label_names)} labels)"
    if '"' in description or "\\" in description or "\n" in description:
        raise ConfigError(f"--description {description!r}: one line without double quotes or backslashes")
    return PluginSpec(name, tuple(requests), task, TASKS[task], label_names, task_name, description)


def _columns(request: ModalityRequest) -> list[str]:
    from mmapps.scaffold.kinds import TABULAR_FEATURES

    return [f"{request.name}_{i}" for i in range(TABULAR_FEATURES)] if request.template.suffix is None else [request.name]
