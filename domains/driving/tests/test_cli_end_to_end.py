"""`mmapps driving train --recipe smoke` end to end through Typer's CliRunner, then `kitti-eval` on its result files."""

from pathlib import Path

import pytest

from mmapps_domains.driving.kitti import read_label


@pytest.mark.slow
def test_smoke_train_report_and_result_files(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    app = build_app()
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["driving", "train", "--recipe", "smoke", "--out", str(run)])
    assert result.exit_code == 0, result.output
    report = (run / "report.md").read_text()
    assert "KITTI AP (test split)" in report and "| Car | bev |" in report and "Fusion diagnostics" in report
    assert "camera removed at test time" in report
    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert "driving_pr_curves.png" in figures
    assert any(n.startswith("driving_bev_") for n in figures) and any(n.startswith("driving_camera_") for n in figures)
    results = sorted((run / "kitti_results").glob("*.txt"))
    assert results
    for path in results:
        assert all(obj.score is not None for obj in read_label(path))
    labels = Path(next((tmp_path / "cache").rglob("label_2")))
    out = CliRunner().invoke(app, ["driving", "kitti-eval", "--labels", str(labels), "--results", str(run / "kitti_results")])
    assert out.exit_code == 0, out.output
    assert "| Car | bev |" in out.output
