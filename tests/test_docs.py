"""The docs cannot rot: the plugin page is the example plugin, and documented commands run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_plugin_page_is_the_example_plugin_verbatim():
    text = (REPO / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", text, flags=re.S)
    assert {path for path, _ in blocks} == {"examples/mmapps-shapes/pyproject.toml", "examples/mmapps-shapes/mmapps_shapes/__init__.py", "examples/mmapps-shapes/mmapps_shapes/data.py"}
    for path, code in blocks:
        assert code == (REPO / path).read_text().rstrip(), f"docs/plugins.md is out of date for {path}"


def test_architecture_python_examples_run():
    text = (REPO / "docs" / "architecture.md").read_text()
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(code, "docs/architecture.md", "exec"), {})


@pytest.mark.slow
def test_cli_page_commands_run(shapes_domain, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    text = (REPO / "docs" / "cli.md").read_text()
    bash = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S))
    commands = [shlex.split(line) for line in bash.splitlines() if line.startswith("mmapps shapes")]
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "examples").mkdir(parents=True)
    (tmp_path / "docs" / "examples" / "run.yaml").write_text((REPO / "docs" / "examples" / "run.yaml").read_text())
    app = build_app()
    for argv in commands:
        result = CliRunner().invoke(app, argv[1:])
        assert result.exit_code == 0, f"{' '.join(argv)}\n{result.output}"
