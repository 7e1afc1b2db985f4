"""Per-layer int8 sensitivity, and the search that keeps the most sensitive op groups in fp32.

An *op group* is the quantisable nodes (Conv, constant-weight MatMul/Gemm, embedding Gather) of one
block of the PyTorch model: the module path torch's exporter records on every node
(``pkg.torch.onnx.name_scopes``), cut after its last numeric part, so a ResNet basic block
(``encoders.image.trunk.4.0``), a BERT layer (``...encoder.layer.3``) or a fusion transformer layer
is one group, and a module outside any numbered container (a projection, a head) is its own.

`layer_sensitivity` quantises one group at a time (everything else fp32) and scores it by the
relative output error on validation samples. `search_exclusions` then keeps the highest-scoring
groups in fp32, a few more at each step, until the paired-bootstrap upper bound of the validation
metric drop is within the goal, or until the fp32 share of the quantisable MACs would pass
`MAX_FP32_SHARE` (the goal is then reported missed, with the table).
"""

from __future__ import annotations

import ast
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_FP32_SHARE = 0.5
PROBE_SAMPLES = 64


def node_groups(model: Any, nodes: list[str]) -> dict[str, list[str]]:
    """Group label -> node names, for the quantisable `nodes` of the ONNX `model` (see the module doc)."""
    by_name = {n.name: n for n in model.graph.node}
    groups: dict[str, list[str]] = {}
    for name in nodes:
        groups.setdefault(_group_of(by_name[name]), []).append(name)
    return groups


def _group_of(node: Any) -> str:
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        scopes = []
    modules = [s for s in scopes[:-1] if isinstance(s, str) and s]
    if not modules:
        return node.name
    parts = modules[-1].split(".")
    numeric = [i for i, p in enumerate(parts) if p.isdigit()]
    label = ".".join(parts[: numeric[-1] + 1]) if numeric else modules[-1]
    return label.removeprefix("model.")


def layer_sensitivity(quantize: Callable[[Path, frozenset[str]], dict[str, Any]], groups: dict[str, list[str]], probe: Any, macs: dict[str, int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Quantise one group at a time and score it; rows sorted most sensitive first.

    Args:
        quantize: ``(target, exclude) -> plan``: writes the int8 graph with the nodes in `exclude` left fp32.
        groups: label -> node names (`node_groups`).
        probe: a `mmapps.export.quant_eval.SplitProbe` on validation.
        macs: node -> MACs of the example batch.
    """
    from mmapps.export.session import create_session

    everything = frozenset(n for names in groups.values() for n in names)
    total = sum(macs.get(n, 0) for n in everything) or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmapps-sensitivity-") as tmp:
        target = Path(tmp) / "one-group.onnx"
        for i, (label, names) in enumerate(groups.items()):
            plan = quantize(target, everything - set(names))
            error = probe.output_error(create_session(target), PROBE_SAMPLES)
            ops = dict(Counter(plan["node_ops"][n] for n in names))
            rows.append({"group": label, "ops": ops, "nodes": sorted(names), "mac_share": sum(macs.get(n, 0) for n in names) / total, "output_error": error})
            log(f"  sensitivity {i + 1}/{len(groups)}: {label} ({', '.join(f'{k} x{v}' for k, v in ops.items())}): relative output error {error:.4g}")
    rows.sort(key=lambda r: -r["output_error"])
    return rows


def _schedule(count: int) -> list[int]:
    steps, k = [], 1
    while k < count:
        steps.append(k)
        k = k + 1 if k < 4 else k * 2
    return steps


def search_exclusions(quantize: Callable[[Path, frozenset[str]], dict[str, Any]], target: Path, rows: list[dict[str, Any]], evaluate: Callable[[], dict[str, Any]], goal: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Keep the `rows`' most sensitive groups fp32 (1, 2, 3, 4, 8, 16... of them) until ``evaluate()['drop_ci_high'] <= goal``.

    Returns ``{"plan", "validation", "excluded_groups", "steps", "goal_met"}``; the int8 graph at `target`
    is the chosen step's (the first that met the goal, else the one with the lowest upper bound).
    """
    steps, best = [], None
    for k in _schedule(len(rows)):
        if sum(r["mac_share"] for r in rows[:k]) > MAX_FP32_SHARE:
            break
        excluded = frozenset(n for r in rows[:k] for n in r["nodes"])
        plan = quantize(target, excluded)
        validation = evaluate()
        high = validation.get("drop_ci_high")
        step = {"fp32_groups": k, "groups": [r["group"] for r in rows[:k]], "int8_mac_share": plan["int8_mac_share"], "drop": validation.get("drop"), "drop_ci_high": high}
        steps.append(step)
        log(f"  keeping {k} group(s) fp32 ({', '.join(step['groups'][-4:])}{'...' if k > 4 else ''}): int8 share {plan['int8_mac_share']:.1%}, drop {_fmt(validation.get('drop'))}, CI upper bound {_fmt(high)} (goal {goal:g})")
        if best is None or (high is not None and (best[2].get("drop_ci_high") is None or high < best[2]["drop_ci_high"])):
            best = (k, plan, validation)
        if high is not None and high <= goal:
            return {"plan": plan, "validation": validation, "excluded_groups": step["groups"], "steps": steps, "goal_met": True}
    if best is None:
        return {"plan": None, "validation": None, "excluded_groups": [], "steps": steps, "goal_met": False}
    k, plan, validation = best
    if k != steps[-1]["fp32_groups"]:
        plan = quantize(target, frozenset(n for r in rows[:k] for n in r["nodes"]))
    return {"plan": plan, "validation": validation, "excluded_groups": [r["group"] for r in rows[:k]], "steps": steps, "goal_met": False}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def sensitivity_table(folder: Path, loaded: Any, method: str = "static", calibration_samples: int = 64, calibration_method: str = "minmax", log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The per-layer table of an existing export folder on its validation split, without changing the folder
    (for a benchmark whose test-split goal is missed while the export's validation check passed)."""
    import onnx

    from mmapps.export.quant_eval import SplitProbe
    from mmapps.export.quantize import _feeds, quantize_graph, uniform_feeds
    from mmapps.export.session import OnnxModel
    from mmapps.export.sidecar import read_sidecar

    sidecar, folder = read_sidecar(Path(folder))
    fp32 = OnnxModel(sidecar, folder)
    source = Path(folder) / sidecar.model_file
    calibration = list(_feeds(loaded.loader("train"), fp32.runtime, calibration_samples)) if method == "static" else []
    if calibration_method != "minmax":
        calibration = uniform_feeds(calibration, sidecar.inputs)
    probe = SplitProbe.run(loaded, fp32, "val")
    example = probe.feeds(2)[0]
    with tempfile.TemporaryDirectory(prefix="mmapps-sensitivity-") as tmp:
        cache = Path(tmp) / "ranges.json"
        first = quantize_graph(source, Path(tmp) / "all.onnx", method, example, calibration, calibration_method, cache=cache)
        macs = first.pop("_macs")
        quantize = lambda to, exclude: {k: v for k, v in quantize_graph(source, to, method, example, calibration, calibration_method, exclude, cache, macs).items() if k != "_macs"}
        groups = node_groups(onnx.load(str(source), load_external_data=False), first["int8_nodes"])
        return layer_sensitivity(quantize, groups, probe, macs, log)
