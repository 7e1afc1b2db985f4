"""Write a plugin package from a `PluginSpec`: the files of ``mmapps new-domain``."""

from __future__ import annotations

import shlex
from importlib import resources
from pathlib import Path
from string import Template

from mmapps.errors import ConfigError, WriteError
from mmapps.scaffold.kinds import TABULAR_FEATURES
from mmapps.scaffold.spec import PluginSpec


def command_line(spec: PluginSpec) -> str:
    """The ``mmapps new-domain`` command that generates `spec` (written into the package)."""
    modalities = ",".join(m.name if m.name == m.template.kind else f"{m.name}:{m.template.kind}" for m in spec.modalities)
    parts = ["mmapps", "new-domain", spec.name, "--modalities", modalities, "--task", spec.task_kind]
    if spec.labels != spec.task.default_labels:
        parts += ["--labels", ",".join(spec.labels)]
    from mmapps.scaffold.spec import DEFAULT_TASK_NAMES

    if spec.task_name != DEFAULT_TASK_NAMES[spec.task_kind]:
        parts += ["--task-name", spec.task_name]
    if spec.description != default_description(spec):
        parts += ["--description", spec.description]
    return " ".join(shlex.quote(p) for p in parts)


def default_description(spec: PluginSpec) -> str:
    kinds = " + ".join(f"{r.name} ({r.template.kind})" for r in spec.modalities)
    return f"{spec.name}: {kinds} -> {spec.task_name} ({spec.task_kind}, {len(spec.labels)} labels)"


def render_files(spec: PluginSpec) -> dict[str, str]:
    """Relative path -> content of every file of the package."""
    values = _values(spec)
    package = spec.package
    return {
        "pyproject.toml": _fill("pyproject.toml.tmpl", values),
        "README.md": _fill("README.md.tmpl", values),
        f"{package}/__init__.py": _fill("init.py.tmpl", values),
        f"{package}/data.py": _fill("data.py.tmpl", values),
        "tests/conftest.py": _fill("conftest.py.tmpl", values),
        f"tests/test_{spec.name}.py": _fill("test_plugin.py.tmpl", values),
    }


def write_plugin(spec: PluginSpec, out: Path, force: bool = False) -> Path:
    """Write the package into ``out`` (the folder is created; an existing non-empty one needs `force`).

    Raises:
        ConfigError: `out` exists and is not empty (without `force`).
        WriteError: a file could not be written.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out}: the folder exists and is not empty; choose a new folder or pass --force to overwrite the generated files")
    files = render_files(spec)
    for relative, content in files.items():
        path = out / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except OSError as err:
            raise WriteError.from_os_error(path, err) from None
    return out


def _fill(name: str, values: dict[str, str]) -> str:
    text = resources.files("mmapps.scaffold").joinpath("files", name).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def _py(value: object) -> str:
    """A literal in the generated code's style (double quotes)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_py(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else (f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    return repr(value)


def _values(spec: PluginSpec) -> dict[str, str]:
    files = [m for m in spec.modalities if m.template.suffix is not None]
    tables = [m for m in spec.modalities if m.template.suffix is None]
    kinds = {m.template.kind: m.template for m in spec.modalities}
    imports = sorted({line for t in kinds.values() for line in t.imports})
    constants = ("IMAGE_SIZE = 32\n" if "image" in kinds else "") + ("SIGNAL_FS = 100.0  # Hz\nSIGNAL_SECONDS = 5\nSIGNAL_CHANNELS = 3\n" if "signal" in kinds else "")
    demo_rows = []
    for index, m in enumerate(spec.modalities):
        if m.template.suffix is not None:
            demo_rows.append(f'        row[{_py(m.name)}] = "" if absent[{index}] else f"{m.name}/{{i:05d}}{m.template.suffix}"\n')
            demo_rows.append(f"        if row[{_py(m.name)}]:\n            write_{m.template.kind}(out / row[{_py(m.name)}], signal, rng)\n")
        else:
            demo_rows.append(f"        features = signal @ mixing + rng.normal(0.0, 0.3, {TABULAR_FEATURES})\n")
            demo_rows.append(f'        row.update({{c: "" if absent[{index}] else f"{{v:.4f}}" for c, v in zip(TABULAR[{_py(m.name)}], features)}})\n')
    mixing = f"    mixing = np.random.default_rng(1234).normal(0.0, 1.0, (len(LABELS), {TABULAR_FEATURES}))  # fixed: the same for every seed\n" if tables else ""
    target_columns = '["label"]' if not spec.task.label_columns else "list(LABELS)"
    modality_doc = ", ".join(
        f"``{m.name}`` (a {m.template.kind} file path relative to the root: {', '.join(m.template.suffixes)})" if m.template.suffix else f"``{m.name}_0`` .. ``{m.name}_{TABULAR_FEATURES - 1}`` (numbers)"
        for m in spec.modalities
    )
    target_doc = "one ``label`` column holding a class name" if not spec.task.label_columns else ("one 0/1 column per label, empty: unknown" if spec.task_kind == "multilabel" else "one number column per target, empty: unknown")
    encoders = "".join(f"        {_py(m.name)}: {_py(m.template.encoder)},\n" for m in spec.modalities)
    modalities = "".join(f"        ModalitySpec({_py(m.name)}, {_py(m.template.kind)}, reader={_py(m.template.reader.replace('<name>', m.name))}, layout={_py(m.template.layout)}),\n" for m in spec.modalities)
    columns = ["sample_id", "group_id", "split", *(m.name if m.template.suffix else f"{m.name}_0..{TABULAR_FEATURES - 1}" for m in spec.modalities), *(["label"] if not spec.task.label_columns else spec.labels)]
    dependencies = ["mmapps", *(["pillow"] if "image" in kinds else [])]
    return {
        "name": spec.name,
        "package": spec.package,
        "distribution": spec.distribution,
        "description": spec.description,
        "command": command_line(spec),
        "labels": _py(tuple(spec.labels)),
        "encoders": encoders,
        "modalities": modalities,
        "task_name": spec.task_name,
        "head": spec.task.head,
        "loss_name": spec.task.loss[0],
        "loss_ref": spec.task.loss[1],
        "postprocess": spec.task.postprocess,
        "metrics": spec.task.metrics,
        "primary_metric": spec.task.primary_metric,
        "direction": "" if spec.task.higher_is_better else "\n            higher_is_better=False,",
        "dependencies": _py(dependencies),
        "imports": "".join(line + "\n" for line in imports),
        "constants": constants,
        "files": _py({m.name: tuple(m.template.suffixes) for m in files}),
        "tabular": "{" + ", ".join(f'{_py(m.name)}: [f"{m.name}_{{i}}" for i in range({TABULAR_FEATURES})]' for m in tables) + "}",
        "target_columns": target_columns,
        "mixing": mixing,
        "modality_count": str(len(spec.modalities)),
        "demo_rows": "".join(demo_rows),
        "demo_target": spec.task.demo,
        "writers": "".join(kinds[k].writer for k in sorted(kinds)),
        "parse_target": spec.task.parse,
        "readers": "".join(kinds[k].read for k in sorted(kinds)),
        "readers_table": "{" + ", ".join(f"{_py(m.name)}: {_reader_name(m.template.kind)}" for m in files) + "}",
        "class_name": "".join(part.capitalize() for part in spec.name.split("_")) + "Dataset",
        "modality_doc": modality_doc,
        "target_doc": target_doc,
        "columns": ", ".join(f"`{c}`" for c in columns),
    }


def _reader_name(kind: str) -> str:
    return "read_signal_file" if kind == "signal" else f"read_{kind}"  # read_signal is the core reader it calls


def check_task_functions(spec: PluginSpec) -> None:
    """Refuse a task whose core functions this mmapps does not have (an older core)."""
    from mmapps.domain import resolve

    for ref in (spec.task.loss[1], spec.task.postprocess, spec.task.metrics):
        try:
            resolve(ref)
        except (ImportError, AttributeError):
            raise ConfigError(f"--task {spec.task_kind}: this mmapps has no {ref} (needed by the template); upgrade mmapps or choose another --task") from None
