"""A domain's own prediction file for served predictions (its ``write_predictions``), as text."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mmapps.evaluation.records import PredictionRecord


def predictions_file(served: Any) -> dict[str, str]:
    """``{"name": file name, "text": its content}`` written by the domain's writer (JSON Lines by default)."""
    from mmapps.workflows.run import write_predictions

    runner = served.loaded.runner
    meta_of = {s.sample_id: s.meta for s in served.samples}
    records = {task: [PredictionRecord(p.sample_id, p.sample_id, task, p.tasks[task], None, meta_of.get(p.sample_id, {})) for p in served.predictions]
               for task in runner.postprocess}
    with tempfile.TemporaryDirectory(prefix="mmapps-serve-out-") as folder:
        path = Path(write_predictions(runner.domain, records, Path(folder)))
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return {"name": path.name, "text": "".join(f"# {p.relative_to(path)}\n{p.read_text()}" for p in files)}
        return {"name": path.name, "text": path.read_text()}
