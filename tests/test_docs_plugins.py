"""docs/plugins.md cannot rot: its tables are the code's, its generated files are the example's, its commands run."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from mmapps.domain import Domain, TaskSpec
from mmapps.scaffold import command_line, parse_spec
from mmapps.scaffold.kinds import KINDS
from mmapps.scaffold.tasks import TASKS
from mmapps.testing.contracts import CONTRACTS, contracts_markdown, error_types_markdown

REPO = Path(__file__).resolve().parents[1]
PAGE = (REPO / "docs" / "plugins.md").read_text()


def _between(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", PAGE, flags=re.S)
    assert match, f"docs/plugins.md lacks the {name} markers"
    return match.group(1)


def test_contracts_and_error_tables_are_generated_from_the_code():
    from mmapps.testing.docs import refresh

    assert _between("contracts") == contracts_markdown(), "run python -m mmapps.testing.docs docs/plugins.md"
    assert _between("errors") == error_types_markdown(), "run python -m mmapps.testing.docs docs/plugins.md"
    assert refresh(PAGE) == PAGE


def test_every_callable_field_of_the_plugin_api_has_a_contract_row():
    callables = {f"Domain.{f.name}" for f in dataclasses.fields(Domain) if "Ref" in str(f.type)}
    callables |= {f"TaskSpec.{f.name}" for f in dataclasses.fields(TaskSpec) if "Ref" in str(f.type)}
    assert callables == {"Domain.build_datasets", "Domain.write_demo_data", "Domain.write_predictions", "Domain.setup", "Domain.build_model", "Domain.batch_sampler", "Domain.report_sections", "Domain.extra_commands", "Domain.data_options", "Domain.export", "Domain.pretrain", "Domain.serve", "TaskSpec.losses", "TaskSpec.postprocess", "TaskSpec.metrics", "TaskSpec.bootstrap_metric"}
    assert callables <= {c.field for c in CONTRACTS}


def test_generated_blocks_are_the_example_files_verbatim():
    blocks = re.findall(r"<!-- (?:file|generated): (\S+) -->\n```\w*\n(.*?)\n```", PAGE, flags=re.S)
    assert {path for path, _ in blocks} >= {"examples/mmapps-shapes/tests/conftest.py", "examples/mmapps-shapes/tests/test_shapes.py", "examples/mmapps-shapes/mmapps_shapes/data.py"}
    for path, code in blocks:
        assert code == (REPO / path).read_text().rstrip(), f"docs/plugins.md is out of date for {path}"


def test_template_options_and_the_shapes_command_match_the_code():
    spec = parse_spec("shapes", "image,measurements:tabular", "multiclass", "small-round,large-round,small-angular,large-angular", "shape", "Example plugin: PNG shape images + CSV measurements -> shape class")
    assert f"```bash\n{command_line(spec)}\n```" in PAGE
    assert "Kinds with a template: " + ", ".join(f"`{k}`" for k in KINDS) in PAGE
    assert "| " + ", ".join(f"`{t}`" for t in TASKS) + " (" in PAGE


def test_the_first_command_of_the_page_generates_a_package(tmp_path):
    from mmapps.cli.main import build_app

    first = next(line for line in re.search(r"## 1\..*?```bash\n(.*?)```", PAGE, flags=re.S).group(1).splitlines() if line.startswith("mmapps new-domain"))
    argv = shlex.split(first)[1:] + ["--out", str(tmp_path / "mmapps-ecg")]
    result = CliRunner().invoke(build_app(), argv)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mmapps-ecg" / "mmapps_ecg" / "data.py").is_file() and (tmp_path / "mmapps-ecg" / "tests" / "test_ecg.py").is_file()
