"""docs/surveillance.md examples stay valid: the manifest lines parse, the YAML config resolves."""

import re
from pathlib import Path

import yaml

from mmapps.data import IssueLog
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.annotations import XD_CODES, read_manifest

DOC = Path(__file__).resolve().parents[3] / "docs" / "surveillance.md"


def test_manifest_example_parses(tmp_path: Path) -> None:
    block = re.search(r"```json\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    (tmp_path / "manifest.jsonl").write_text(block)
    issues = IssueLog()
    entries = read_manifest(tmp_path, ["fight", "fall", "intrusion"] + list(XD_CODES.values()), issues)
    assert not issues.issues and len(entries) == 3
    assert entries[2].labels == ("shooting",) and entries[2].segments is None
    assert entries[0].start_time == "2026-05-01T13:00:00"


def test_yaml_example_resolves(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    values = yaml.safe_load(block)
    values["data"]["root"] = str(tmp_path)
    path = tmp_path / "xd.yaml"
    path.write_text(yaml.safe_dump(values))
    cfg = resolve_config(domain, None, path)
    assert cfg.data.options["regime"] == "weak" and len(cfg.data.options["classes"]) == 6
    assert cfg.model.modalities == ["audio", "video"]
