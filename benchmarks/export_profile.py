"""onnxruntime's profiler, summed by op type: where a graph spends its time (for goals that are missed)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def op_profile(model: Path, feeds: dict[str, np.ndarray], threads: int = 1, runs: int = 3, top: int = 8) -> list[dict[str, Any]]:
    """Op type -> total kernel time (ms per run) and share, from ``SessionOptions.enable_profiling`` over `runs` runs (after one warm-up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        inputs = {k: v for k, v in feeds.items() if k in names}
        session.run(None, inputs)
        for _ in range(runs):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + float(event.get("dur", 0)) / 1e3
    total = sum(by_op.values()) or 1.0
    rows = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": op, "ms_per_run": ms / (runs + 1), "share": ms / total} for op, ms in rows]


def render_profile(title: str, rows: list[dict[str, Any]]) -> str:
    return f"{title}: " + ", ".join(f"{r['op']} {r['share']:.0%} ({r['ms_per_run']:.1f} ms)" for r in rows)
