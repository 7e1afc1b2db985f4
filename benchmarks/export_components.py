"""Components of `benchmarks/export.py`: each CNN encoder and each text transformer of a FusionModel
exported alone (``torch.onnx.export(dynamo=True)``), quantised (CNN: static QDQ per-channel; text:
dynamic MatMul/Gemm/Gather) and timed fp32 vs int8 on onnxruntime, alternated."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


class _Cnn(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.trunk, self.proj = encoder.trunk, encoder.proj

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(images))


class _Text(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], path: Path, dynamic: dict[str, Any]) -> None:
    program = torch.onnx.export(module.eval(), example, dynamo=True, input_names=names, output_names=["out"], dynamic_shapes=dynamic, opset_version=18, external_data=False)
    program.save(str(path))


def _session(path: Path, threads: int) -> Any:
    from mmapps.export.session import create_session

    return create_session(path, threads)


def component_goals(entry: dict[str, Any], stats: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """CNN static int8: >= 2.5x faster (every batch size, 1 thread) and >= 3.5x smaller; transformer dynamic int8: >= 1.8x at b32, >= 1.5x at b1."""
    speed = lambda s: stats[f"fp32|1|{s}"]["median_ms"] / stats[f"int8|1|{s}"]["median_ms"]
    if entry["method"] == "static":
        goals = {f"speed b{s}": (speed(s), 2.5) for s in args.batch} | {"size": (entry["fp32_bytes"] / entry["int8_bytes"], 3.5)}
    else:
        goals = {f"speed b{s}": (speed(s), 1.8 if s >= 32 else 1.5) for s in args.batch}
    return {k: {"value": v, "goal": g, "met": bool(v >= g)} for k, (v, g) in goals.items()}


def components(args: argparse.Namespace, domain: Any, work: Path, alternate: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    from mmapps.export.loading import load_for_export
    from mmapps.export.quantize import model_bytes, quantize_graph
    from mmapps.report.complexity import core_model, first_batch

    loaded = load_for_export(args.checkpoint, domain)
    core = core_model(loaded.model)
    if not isinstance(getattr(core, "encoders", None), nn.ModuleDict):
        return []
    pool = loaded.splits.train
    batch = first_batch(pool, loaded.cfg, loaded.domain, max(args.batch))
    calib = first_batch(pool, loaded.cfg, loaded.domain, min(len(pool), args.calibration))
    out = []
    for m, encoder in core.encoders.items():
        data = batch.inputs[m].data
        if hasattr(encoder, "trunk") and hasattr(encoder, "proj"):
            images = data.flatten(0, 1) if data.dim() == 5 else data  # (N, C, H, W)
            cal = calib.inputs[m].data
            cal = cal.flatten(0, 1) if cal.dim() == 5 else cal
            feeds = {s: {"images": images[:s].float().numpy()} for s in args.batch}
            calibration = [{"images": cal[i:i + 8].float().numpy()} for i in range(0, len(cal), 8)]
            module, example, names, method = _Cnn(encoder), (images[:2].float(),), ["images"], "static"
            dynamic = {"images": {0: torch.export.Dim("n", min=1, max=4096)}}
        elif hasattr(encoder, "backbone") and hasattr(encoder, "tokenizer"):
            texts = [t if isinstance(t, str) else " ".join(t) for t in data]
            enc = encoder.tokenizer(texts, padding="max_length", truncation=True, max_length=encoder.max_length, return_tensors="np")
            feeds = {s: {"input_ids": enc["input_ids"][:s].astype(np.int64), "attention_mask": enc["attention_mask"][:s].astype(np.int64)} for s in args.batch}
            calibration = []
            ex = feeds[min(args.batch)] if min(args.batch) > 1 else {k: np.repeat(v, 2, 0) for k, v in feeds[1].items()}
            module, names, method = _Text(encoder.backbone), ["input_ids", "attention_mask"], "dynamic"
            example = (torch.from_numpy(ex["input_ids"][:2]), torch.from_numpy(ex["attention_mask"][:2]))
            n = torch.export.Dim("n", min=1, max=4096)
            dynamic = {"input_ids": {0: n}, "attention_mask": {0: n}}
        else:
            continue
        fp32, int8 = work / f"component-{m}.onnx", work / f"component-{m}.int8.onnx"
        _export(module, example, names, fp32, dynamic)
        plan = quantize_graph(fp32, int8, method, feeds[max(args.batch)], calibration)
        ref = _session(fp32, 0).run(None, feeds[max(args.batch)])[0]
        got = _session(int8, 0).run(None, feeds[max(args.batch)])[0]
        variants = {
            name: (lambda path: lambda threads: {s: (lambda sess=_session(path, threads), f=feeds[s]: sess.run(None, f)) for s in args.batch})(path)
            for name, path in (("fp32", fp32), ("int8", int8))
        }
        stats = alternate(variants, args.threads, args.rounds, {s: (args.calls_b1 if s == 1 else args.calls_b32) for s in args.batch}, args.batch)
        rows = []
        for t in args.threads:
            for s in args.batch:
                a, b = stats[f"fp32|{t}|{s}"], stats[f"int8|{t}|{s}"]
                rows.append([f"{t} thr, b{s}", a["median_ms"], b["median_ms"], a["median_ms"] / b["median_ms"], a["cpu_median_ms"], b["cpu_median_ms"]])
        entry = {
            "name": f"{m} ({type(encoder).__name__})", "method": method, "rows": rows, "latency": stats, "fp32_bytes": model_bytes(fp32), "int8_bytes": model_bytes(int8),
            "max_abs_diff": float(np.max(np.abs(ref - got))), "int8_mac_share": plan["int8_mac_share"], "fp32_ops": plan["fp32_ops"], "int8_ops": plan["int8_ops"],
        }
        entry["goals"] = component_goals(entry, stats, args)
        if not all(g["met"] for g in entry["goals"].values()):
            from export_profile import op_profile

            entry["profile"] = {f"{name} b{max(args.batch)}": op_profile(path, feeds[max(args.batch)], 1) for name, path in (("fp32", fp32), ("int8", int8))}
        out.append(entry)
    return out
