"""``watch``: stream a recording through a trained model, write alerts as they close.

Windows are decoded, featurised and scored as they arrive (`stream.iter_media_windows` +
`streaming.StreamingScorer`), so memory does not grow with the clip's length beyond a few floats
per window. Alerts follow the segment rule of `events` (per class: windows >= threshold, merged
across gaps of <= 1 window) and are written when they close: ``{"start", "end", "class", "score"}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mmapps.data import IssueLog, Sample, collate_samples
from mmapps.errors import ConfigError


@dataclass
class WatchResult:
    n_windows: int
    n_alerts: int
    duration: float
    seconds: float
    warnings: list[str] = field(default_factory=list)  # per file: bad chat lines, or a chat log not used
    unused_inputs: list[str] = field(default_factory=list)  # named inputs the run went on without (exit 3)

    @property
    def real_time_factor(self) -> float:
        """Seconds of recording processed per second of wall-clock time (model loading excluded)."""
        return self.duration / self.seconds if self.seconds > 0 else float("inf")


class AlertTracker:
    """Per class: open an alert at a window >= threshold, close it after more than ``merge_gap`` quiet windows."""

    def __init__(self, classes: list[str], window_s: float, threshold: float, merge_gap: int = 1) -> None:
        self.classes, self.window_s, self.threshold, self.merge_gap = classes, window_s, threshold, merge_gap
        self.open: dict[int, list] = {}  # class -> [first window, last window above, max score]

    def update(self, w: int, scores: np.ndarray) -> list[dict]:
        closed = []
        for c, s in enumerate(scores):
            alert = self.open.get(c)
            if s >= self.threshold:
                if alert is None:
                    self.open[c] = [w, w, float(s)]
                else:
                    alert[1], alert[2] = w, max(alert[2], float(s))
            elif alert is not None and w - alert[1] > self.merge_gap:
                closed.append(self._emit(c))
        return closed

    def finish(self) -> list[dict]:
        return [self._emit(c) for c in sorted(self.open)]

    def _emit(self, c: int) -> dict:
        first, last, score = self.open.pop(c)
        return {"start": round(first * self.window_s, 3), "end": round((last + 1) * self.window_s, 3), "class": self.classes[c], "score": round(score, 4)}


def default_threshold(checkpoint: Path, fallback: float) -> float:
    """The alarm threshold the run tuned on validation (``alarm/threshold`` in the run's
    ``metrics.json`` beside ``checkpoints/``), else ``fallback``."""
    metrics = checkpoint.resolve().parent.parent / "metrics.json"
    if metrics.is_file():
        value = json.loads(metrics.read_text()).get("alarm/threshold")
        if isinstance(value, (int, float)) and 0 < value < 1:
            return float(value)
    return fallback


def load_trained(checkpoint: Path) -> tuple[Any, Any, Any]:
    """(cfg, domain, model in eval mode) from an inference checkpoint."""
    from mmapps_domains.surveillance import domain

    from mmapps.config import validate_config
    from mmapps.models.build import build_model
    from mmapps.train import checkpoint as ckpt

    state, metadata = ckpt.read_inference_checkpoint(Path(checkpoint))
    cfg = validate_config(ckpt.checkpoint_config(metadata, Path(checkpoint), domain.name))  # another domain's checkpoint: named, not a config dump
    model = build_model(cfg, domain)
    ckpt.load_weights(model, state, Path(checkpoint))
    return cfg, domain, model.eval()


def read_watch_chat(chat: Path, start_time: str | None, on_error: str = "stop") -> tuple[list[Any] | None, list[str]]:
    """The messages of ``watch``'s chat log and the warnings to print, per the ``on_error`` policy.

    ``stop``: a bad line or an unusable log (missing, wrong format, no usable line) raises.
    ``skip``: bad lines are one warning for the file; an unusable log gives None (watch goes on
    without chat, as training does for such a clip) and a warning; the caller exits non-zero.
    """
    from mmapps_domains.surveillance.chat import ChatLogError, read_chat

    lines = IssueLog(on_error=on_error)
    try:
        messages = read_chat(chat, lines, start_time=start_time)
    except (ChatLogError, FileNotFoundError) as err:
        if on_error == "stop":
            raise
        return None, [f"{err}; watching without chat"]
    return messages, [str(issue) for issue in lines.issues]


def window_batches(clip: Path, cfg: Any, domain: Any, modalities: list[str], audio: Path | None, chat: Path | None, start_time: str | None,
                   messages: list[Any] | None = None, prefetch: int = 0) -> Iterator[tuple[Any, Any]]:
    """Yield (media window, collated one-window `Batch`) as the clip is decoded.

    ``chat`` is read with the ``stop`` policy (`read_watch_chat`); pass ``messages`` instead
    (read by the caller under its policy) to skip that. With ``prefetch`` > 0, decoding and
    featurising run that many windows ahead in a background thread (`prefetch.prefetched`), so
    the caller's scoring of a window overlaps the decoding of the next; the numbers are the same.
    """
    from mmapps_domains.surveillance.options import data_options
    from mmapps_domains.surveillance.prefetch import prefetched

    if "features" in modalities:
        raise ConfigError("watch: this model uses pre-extracted features, which a live stream does not have; train without 'features'")
    opts = data_options(cfg.data.options)
    if messages is None and chat is not None:
        messages, _ = read_watch_chat(chat, start_time, "stop")
    layouts = {m: domain.modality(m).layout for m in modalities}
    windows = _window_inputs(clip, opts, modalities, audio, messages)
    for item, inputs in (prefetched(windows, prefetch) if prefetch else windows):
        sample = Sample(str(clip), str(clip), {m: inputs[m] for m in modalities}, meta={"window_starts": [item.start]})
        yield item, collate_samples([sample], layouts)


def _window_inputs(clip: Path, opts: Any, modalities: list[str], audio: Path | None, messages: list[Any] | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Decoded windows and their model inputs (the dataset's tensors: `dataset.video_tensor`, `audio.log_mel`, chat vectors)."""
    from mmapps_domains.surveillance.audio import log_mel
    from mmapps_domains.surveillance.dataset import absent_or, video_tensor
    from mmapps_domains.surveillance.stream import iter_media_windows
    from mmapps_domains.surveillance.text_embed import (
        EMBED_DIM,
        embed_texts,
        pooled_chat_vector,
    )

    spec = opts.window_spec()
    use_chat = messages is not None and "chat" in modalities
    if use_chat:
        # one batched pass over the log's messages, in time order and batches of 64 as training embeds them
        embeddings = embed_texts([m.text for m in messages])  # (N, 384)
        window_of = np.array([int(m.t // spec.window_s) for m in messages], np.int64)  # (N,) the training rule
    for item in iter_media_windows(clip, spec, audio_path=audio, with_audio="audio" in modalities):
        inputs: dict[str, Any] = {"video": video_tensor(item.frames[None], opts.motion_channel)}
        inputs["audio"] = absent_or(log_mel(item.audio[None], spec) if item.audio is not None else None, (spec.n_mels, spec.mel_frames))
        chat_vec = pooled_chat_vector(embeddings[window_of == item.index])[None] if use_chat else None  # (1, 385)
        inputs["chat"] = absent_or(chat_vec, (EMBED_DIM + 1,))
        yield item, inputs


def watch_clip(clip: Path, checkpoint: Path, audio: Path | None = None, chat: Path | None = None, start_time: str | None = None,
               out: Path = Path("alerts.jsonl"), scores_out: Path | None = None, threshold: float | None = None,
               threads: int | None = 1, on_error: str = "skip", prefetch: int = 0, max_context: int | None = None) -> WatchResult:
    """Run a trained model over ``clip`` as a stream; write alerts (and optionally per-window scores) as JSONL.

    ``on_error`` (`read_watch_chat`): ``skip`` goes on past bad chat lines (one warning for the
    file) and, when no line of the chat log is usable, without chat: the result then lists the log
    in ``unused_inputs`` (the CLI exits 3); ``stop`` refuses both before anything is written.
    ``prefetch``: windows decoded ahead in a background thread while the model scores (default 0:
    decode and score in turn; a thread only pays where a core is idle, see docs/surveillance.md).

    ``checkpoint``: a ``.safetensors`` checkpoint (PyTorch) or an export folder / its ``model.onnx``
    (the streaming step graph on onnxruntime, files verified). ``max_context``: windows of past
    kept (default ``data.options.max_context``; an export's is fixed at export).

    ``threads``: torch intra-op threads (default 1: per-window work is small, so extra threads
    mostly add synchronisation, and a live system runs several streams side by side); None keeps
    torch's setting.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)

    from mmapps_domains.surveillance import domain
    from mmapps_domains.surveillance.export import open_scorer
    from mmapps_domains.surveillance.options import data_options

    from mmapps.models.build import selected_modalities

    if not Path(clip).is_file():
        raise FileNotFoundError(f"clip {clip}: not found")
    cfg, scorer, run_threshold = open_scorer(Path(checkpoint), threads, max_context)
    opts = data_options(cfg.data.options)
    messages, warnings, unused = None, [], []
    if chat is not None:
        from mmapps_domains.surveillance.text_embed import embed_texts

        messages, warnings = read_watch_chat(Path(chat), start_time, on_error)
        if messages is None:
            unused.append(str(chat))
        embed_texts(["warm-up"])  # load the text model before the clock starts
    started = time.perf_counter()
    tracker = AlertTracker(opts.classes, opts.window_s, (run_threshold or opts.alert_threshold) if threshold is None else threshold)
    n_windows = n_alerts = 0
    duration = 0.0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as alerts_file, (open(scores_out, "w") if scores_out else open("/dev/null", "w")) as scores_file:
        for item, batch in window_batches(Path(clip), cfg, domain, selected_modalities(cfg, domain), audio, None, start_time, messages=messages, prefetch=prefetch):
            scores = torch.sigmoid(scorer.step(batch)).numpy()
            scores_file.write(json.dumps({"window": item.index, "start": item.start, "scores": scores.tolist()}) + "\n")
            for alert in tracker.update(item.index, scores):
                alerts_file.write(json.dumps(alert) + "\n")
                alerts_file.flush()
                n_alerts += 1
            n_windows, duration = n_windows + 1, item.duration
        for alert in tracker.finish():
            alerts_file.write(json.dumps(alert) + "\n")
            n_alerts += 1
    return WatchResult(n_windows, n_alerts, duration, time.perf_counter() - started, warnings, unused)
