"""Surveillance ``watch``: end-to-end real-time factor, per-window latency and peak memory on CPU.

Streams a synthetic 1280x720 25 fps h264 clip with a 16 kHz AAC track and a chat log through a
model of the default recipe (a trained checkpoint with --checkpoint, else randomly initialised:
the cost is the same) window by window, as ``mmapps surveillance watch`` does.
Latency = time from a window's last frame being decoded to its score.

Usage: python benchmarks/surveillance_watch.py [--seconds 60] [--checkpoint best.safetensors]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402
from surveillance_decode import write_720p_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (watch's default is 1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmapps.models.build import build_model, selected_modalities
    from mmapps.workflows.resolve import resolve_config
    from mmapps_domains.surveillance import domain
    from mmapps_domains.surveillance.streaming import StreamingScorer
    from mmapps_domains.surveillance.watch import load_trained, window_batches

    if args.checkpoint:
        cfg, _, model = load_trained(args.checkpoint)
    else:
        cfg = resolve_config(domain, "default")
        model = build_model(cfg, domain).eval()
    modalities = selected_modalities(cfg, domain)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip720.mp4"
        # written in a child process, so that this process's peak memory is the stream's alone
        writer = multiprocessing.get_context("spawn").Process(target=write_720p_clip, args=(clip, args.seconds))
        writer.start()
        writer.join()
        chat = Path(tmp) / "chat.jsonl"
        chat.write_text("".join(json.dumps({"t": t, "user": "op", "text": "all quiet at gate 3"}) + "\n" for t in np.arange(0.5, args.seconds, 7.0)))
        from mmapps_domains.surveillance.text_embed import embed_texts

        embed_texts(["warm-up"])  # as watch does: the text model loads before the stream starts
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scorer = StreamingScorer(model)
        latencies = []
        started = time.perf_counter()
        for _item, batch in window_batches(clip, cfg, domain, modalities, None, chat, None):
            ready = time.perf_counter()
            torch.sigmoid(scorer.step(batch))
            latencies.append(time.perf_counter() - ready)
        total = time.perf_counter() - started
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = [
        ["recording seconds", args.seconds],
        ["wall seconds", total],
        ["real-time factor (x faster than real time)", args.seconds / total],
        ["median per-window scoring latency (ms)", 1000 * float(np.median(latencies))],
        ["p95 per-window scoring latency (ms)", 1000 * float(np.percentile(latencies, 95))],
        ["peak RSS of the process (MiB)", rss_peak / 1024],
        ["RSS growth during the stream (MiB)", (rss_peak - rss_before) / 1024],
    ]
    markdown = (f"# Surveillance watch\n\n{args.seconds:.0f} s of 1280x720 25 fps h264 + 16 kHz audio + chat, "
                f"recipe {cfg.recipe}, torch threads {torch.get_num_threads()}.\n\n" + table(["measure", "value"], rows) + "\n")
    path = write_results(f"surveillance_watch_{int(args.seconds)}s", {"machine": machine(), "rows": rows}, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
