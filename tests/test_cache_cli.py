"""``mmapps cache info|clear`` end to end through Typer's CliRunner, on entries written by the real cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmapps.cli.main import app
from mmapps.data.cache import SampleCache
from mmapps.data.cache_secret import KEY_ENV, load_secret


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "cache.key"))
    root = tmp_path / "c"
    monkeypatch.setenv("MMAPPS_CACHE_DIR", str(root))
    for domain, n in (("medical", 3), ("surveillance", 2)):
        cache = SampleCache(root, domain, {}, load_secret(root))
        for i in range(n):
            src = tmp_path / f"{domain}{i}.bin"
            src.write_bytes(bytes([i]))
            cache.put(cache.key([src]), {"x": np.zeros(1024, np.float32)}, {})
    (root / "medical" / "old-cache.pkl").write_bytes(b"\x80\x04N.")  # a stray file: counted, never read
    return root


def test_info_lists_folder_size_domains_cap_and_key(filled: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cache", "info"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"folder:  {filled} (mode 0700)" in out and "in 5 entries" in out and "10 GiB" in out
    assert f"key:     {tmp_path / 'cache.key'} (present" in out
    medical = next(line for line in out.splitlines() if line.strip().startswith("medical"))
    assert "3 entries" in medical and "1 other file(s), never read" in medical
    assert "2 entries" in next(line for line in out.splitlines() if line.strip().startswith("surveillance"))


def test_clear_one_domain_then_all(filled: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["cache", "clear", "--domain", "surveillance"])
    assert result.exit_code == 0 and "cleared 2 file(s)" in result.output, result.output
    assert not list((filled / "surveillance").rglob("*.mmc")) and len(list((filled / "medical").rglob("*.mmc"))) == 3
    unknown = runner.invoke(app, ["cache", "clear", "--domain", "../elsewhere"])
    assert unknown.exit_code == 0 and "nothing to clear" in unknown.output and "medical" in unknown.output
    everything = runner.invoke(app, ["cache", "clear", "--dir", str(filled)])
    assert everything.exit_code == 0 and "cleared 3 file(s)" in everything.output
    assert not list(filled.rglob("*.mmc")) and (filled / "medical" / "old-cache.pkl").exists()


def test_info_on_a_folder_not_created_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "k"))
    result = CliRunner().invoke(app, ["cache", "info", "--dir", str(tmp_path / "none")])
    assert result.exit_code == 0 and "not created yet" in result.output and "0 entries" in result.output
    assert "created on first use" in result.output
