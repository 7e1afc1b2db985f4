"""deploy/prometheus/alerts.yml: promtool accepts the rules and its rules unit test proves them.

Needs Debian's Prometheus (`promtool` on the PATH); skipped with that reason elsewhere. A mutated
copy of the rules (one threshold changed) must fail the same unit test, so the test can fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not on the PATH (Debian package prometheus)")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_rules_check_and_unit_test_pass():
    check = promtool("check", "rules", "alerts.yml", cwd=RULES)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
    test = promtool("test", "rules", "alerts_test.yml", cwd=RULES)
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.parametrize("old,new", [
    ("expr: mmapps:request_error_ratio:rate5m > 0.05", "expr: mmapps:request_error_ratio:rate5m > 0.15"),
    ("(mmapps_score_psi) > 0.2", "(mmapps_score_psi) > 0.7"),
    ("or absent(mmapps_ready{job=\"mmapps\"})", ""),
])
def test_unit_test_catches_a_broken_rule(tmp_path, old, new):
    text = (RULES / "alerts.yml").read_text()
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(RULES / "alerts_test.yml", tmp_path)
    test = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert test.returncode != 0, test.stdout
