"""Surveillance ``watch``: real-time factor against PyAV decode-only of the same 720p clip, latency, memory.

Writes a synthetic 1280x720 25 fps h264 clip with a 16 kHz AAC track (PyAV, in a child process)
and a chat log, then alternates in one process, ABAB for ``--rounds`` rounds:

- A, the ceiling: PyAV decode-only: demux the video stream and decode every frame with decoder
  threads on (``thread_type="AUTO"``), no conversion, nothing else;
- B, mmapps: the whole ``watch`` loop (decode video + audio, sample and scale frames, log-mel,
  chat vectors, per-window collate, `StreamingScorer` with the default recipe's model: a trained
  checkpoint with --checkpoint, else randomly initialised, the cost is the same);
- C, the same loop with ``--prefetch 2`` (decoding two windows ahead in a background thread),
  to show what the overlap buys on the machine at hand;
- D, C with the decode path as it was before issue 10 (`before_issue_10`).

Both are timed in wall-clock and process CPU seconds; the table gives median and min per arm and
the ratio ``watch real-time factor / decode-only real-time factor`` (= decode time / watch time;
the goal of issue 10 is >= 0.8). A last, separate pass measures the per-window scoring latency
(from a window's frames being decoded to its score) and the process's peak memory.

Usage: python benchmarks/surveillance_watch.py [--seconds 20] [--rounds 7] [--checkpoint best.safetensors]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402
from surveillance_decode import write_720p_clip  # noqa: E402


def decode_only(clip: Path) -> None:
    """The ceiling: every video frame decoded by PyAV, decoder threads on, nothing converted."""
    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _frame in container.decode(stream):
            pass


def watch_loop(clip: Path, chat: Path, cfg: Any, domain: Any, model: Any, modalities: list[str], prefetch: int = 0) -> list[float]:
    """The ``watch`` loop as `watch_clip` runs it (minus file writing); returns per-window scoring latencies."""
    import torch
    from mmapps_domains.surveillance.streaming import StreamingScorer
    from mmapps_domains.surveillance.watch import window_batches

    scorer, latencies = StreamingScorer(model), []
    for _item, batch in window_batches(clip, cfg, domain, modalities, None, chat, None, prefetch=prefetch):
        ready = time.perf_counter()
        torch.sigmoid(scorer.step(batch))
        latencies.append(time.perf_counter() - ready)
    return latencies


@contextlib.contextmanager
def before_issue_10() -> Iterator[None]:
    """The decode path as it was before issue 10: a new swscale context per sampled frame
    (``frame.reformat``), every audio frame through the resampler, no prefetch (chat was also
    embedded window by window; that part is not restored here)."""
    from mmapps_domains.surveillance.audio import (
        MonoConverter,
        make_resampler,
        resampled_samples,
    )
    from mmapps_domains.surveillance.video import VideoWindowSampler

    def per_call_reformat(self: Any) -> np.ndarray:
        img = self.last_frame.reformat(width=self.spec.width, height=self.spec.height, format=self._format, interpolation="AREA").to_ndarray()
        return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)

    def always_resample(self: Any, frame: Any) -> np.ndarray:
        if self.resampler is None:
            self.resampler = make_resampler(self.rate)
        return resampled_samples(self.resampler, frame)

    saved = VideoWindowSampler._scaled, MonoConverter.__call__
    VideoWindowSampler._scaled, MonoConverter.__call__ = per_call_reformat, always_resample
    try:
        yield
    finally:
        VideoWindowSampler._scaled, MonoConverter.__call__ = saved


def before_loop(*args: Any) -> list[float]:
    with before_issue_10():
        return watch_loop(*args, prefetch=0)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (watch's default is 1)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmapps_domains.surveillance import domain
    from mmapps_domains.surveillance.text_embed import embed_texts
    from mmapps_domains.surveillance.watch import load_trained

    from mmapps.models.build import build_model, selected_modalities
    from mmapps.workflows.resolve import resolve_config

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
        chat.write_text("".join(json.dumps({"t": float(t), "user": "op", "text": "all quiet at gate 3"}) + "\n" for t in np.arange(0.5, args.seconds, 7.0)))
        embed_texts(["warm-up"])  # as watch does: the text model loads before the stream starts
        arms = {"decode-only (PyAV, threads AUTO)": lambda: decode_only(clip),
                "watch (mmapps)": lambda: watch_loop(clip, chat, cfg, domain, model, modalities),
                "watch --prefetch 2 (decoding in a background thread)": lambda: watch_loop(clip, chat, cfg, domain, model, modalities, prefetch=2),
                "watch before issue 10 (per-frame swscale context, audio resampler, no prefetch)": lambda: before_loop(clip, chat, cfg, domain, model, modalities)}
        for fn in arms.values():  # warm-up round (page cache, lazy imports), not counted
            fn()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
        for _ in range(args.rounds):  # ABAB
            for name, fn in arms.items():
                times[name].append(timed(fn))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        latencies = watch_loop(clip, chat, cfg, domain, model, modalities)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stat(name: str, k: int, fn: Callable) -> float:
        return float(fn([t[k] for t in times[name]]))

    base, ours, threaded, before = arms
    rows = []
    for name in arms:
        rows.append([f"{name}: wall s, median / min", f"{stat(name, 0, statistics.median):.3f} / {stat(name, 0, min):.3f}"])
        rows.append([f"{name}: CPU s, median / min", f"{stat(name, 1, statistics.median):.3f} / {stat(name, 1, min):.3f}"])
        rows.append([f"{name}: real-time factor (median wall)", f"{args.seconds / stat(name, 0, statistics.median):.1f}x"])
    ratio = {
        "wall_median": stat(base, 0, statistics.median) / stat(ours, 0, statistics.median),
        "wall_min": stat(base, 0, min) / stat(ours, 0, min),
        "cpu_median": stat(base, 1, statistics.median) / stat(ours, 1, statistics.median),
        "cpu_min": stat(base, 1, min) / stat(ours, 1, min),
        "wall_median_of_paired": float(np.median([a[0] / b[0] for a, b in zip(times[base], times[ours])])),
    }
    rows += [
        *[[f"{name} RTF / decode-only RTF, wall median / CPU median",
           f"{stat(base, 0, statistics.median) / stat(name, 0, statistics.median):.3f} / {stat(base, 1, statistics.median) / stat(name, 1, statistics.median):.3f}"] for name in (threaded, before)],
        ["watch RTF / decode-only RTF, wall: median / min / median of paired rounds", f"{ratio['wall_median']:.3f} / {ratio['wall_min']:.3f} / {ratio['wall_median_of_paired']:.3f}"],
        ["watch RTF / decode-only RTF, CPU: median / min", f"{ratio['cpu_median']:.3f} / {ratio['cpu_min']:.3f}"],
        ["median per-window scoring latency (ms)", 1000 * float(np.median(latencies))],
        ["p95 per-window scoring latency (ms)", 1000 * float(np.percentile(latencies, 95))],
        ["peak RSS of the process (MiB)", rss_peak / 1024],
        ["RSS growth during the last stream (MiB)", (rss_peak - rss_before) / 1024],
    ]
    markdown = (
        f"# Surveillance watch vs PyAV decode-only\n\n{args.seconds:.0f} s of 1280x720 25 fps h264 + 16 kHz AAC + chat, "
        f"recipe {cfg.recipe}, torch threads {torch.get_num_threads()}, {args.rounds} rounds alternated ABAB in one process "
        f"(after one warm-up round). Goal (issue 10): watch real-time factor >= 0.8 of decode-only.\n\n"
        + table(["measure", "value"], rows) + "\n"
    )
    payload = {"machine": machine(), "seconds": args.seconds, "rounds": args.rounds, "ratio": ratio,
               "times": {name: [{"wall": w, "cpu": c} for w, c in ts] for name, ts in times.items()}, "rows": rows}
    path = write_results(f"surveillance_watch_{int(args.seconds)}s", payload, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
