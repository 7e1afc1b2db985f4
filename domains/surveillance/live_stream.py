"""One live stream: segments read as a continuous stream, windows scored the way ``watch`` scores them.

`SegmentFeed` is the blocking, bounded byte source PyAV reads from (so the decoder's state, the
H.264 references and the AAC overlap, carries across segment boundaries, and a cut anywhere gives
the numbers of the uncut stream). `LiveDecoder` reads that stream through `stream.decode_windows`,
the demux loop of `stream.iter_media_windows` (files), so live and offline windows are the same
numbers. Stream time starts at the first decoded frame's time rounded down to a whole window, so a
stream whose timestamps start near 0 has the windows of the same recording watched as a file. `LiveScorer` turns windows into the
model's inputs as ``watch`` does (`dataset.video_tensor`, `audio.log_mel`, pooled chat vectors),
scores them with `StreamingScorer` and closes alerts with `AlertTracker`.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

LIVE_FORMATS = "mpegts,mov,mp4,m4a,3gp,3g2,mj2"  # MPEG-TS and (fragmented) MP4 demuxers only


class SegmentFeed(io.RawIOBase):
    """Binary frames in, a blocking byte stream out; at most ``capacity`` frames wait unread."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._queue: queue.Queue = queue.Queue()
        self._buf = memoryview(b"")
        self._eof = False
        self.ended = False

    def put(self, data: bytes) -> bool:
        """Queue one segment; False (nothing queued) when ``capacity`` segments already wait."""
        if self.ended:
            return True
        if self._queue.qsize() >= self.capacity:
            return False
        self._queue.put(bytes(data))
        return True

    def end(self) -> None:
        """No more segments: the reader sees the end of the stream after the queued ones."""
        if not self.ended:
            self.ended = True
            self._queue.put(None)

    def abort(self) -> None:
        """Drop what is queued and end the stream now."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self.ended = False
        self.end()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not len(self._buf):
            if self._eof:
                return 0
            chunk = self._queue.get()
            if chunk is None:
                self._eof = True
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class LiveDecoder:
    """Windows (`stream.MediaWindow`) of the stream read from a `SegmentFeed`, in order, as they complete."""

    def __init__(self, feed: SegmentFeed, spec: Any, with_audio: bool = True) -> None:
        self.feed, self.spec, self.with_audio = feed, spec, with_audio

    def windows(self) -> Iterator[Any]:
        import av

        from mmapps_domains.surveillance.errors import MediaError
        from mmapps_domains.surveillance.stream import decode_windows

        try:
            container = av.open(self.feed, mode="r", container_options={"format_whitelist": LIVE_FORMATS})
        except (av.error.FFmpegError, UnicodeDecodeError) as err:
            raise MediaError(f"live stream: the first segment is not MPEG-TS or fragmented MP4 ({type(err).__name__}); "
                             "send MPEG-TS segments, or an fMP4 init segment followed by media segments") from None
        try:
            yield from decode_windows(container, self.spec, "live stream", with_audio=self.with_audio, align_origin=True)
        finally:
            container.close()


class LiveScorer:
    """Window inputs, streaming scores, alerts and drift observations of one stream (a ``watch`` run)."""

    def __init__(self, runner: Any, metrics: Any, chat: bool = True, start_time: Any = None) -> None:
        from mmapps_domains.surveillance.options import data_options
        from mmapps_domains.surveillance.streaming import StreamingScorer
        from mmapps_domains.surveillance.watch import AlertTracker, default_threshold

        from mmapps.errors import ConfigError
        from mmapps.models.build import selected_modalities

        self.runner, self.metrics = runner, metrics
        cfg, domain = runner.cfg, runner.domain
        self.opts = data_options(cfg.data.options)
        self.spec = self.opts.window_spec()
        self.modalities = selected_modalities(cfg, domain)
        if "features" in self.modalities:
            raise ConfigError("live: this model uses pre-extracted features, which a live stream does not have")
        self.layouts = {m: domain.modality(m).layout for m in self.modalities}
        self.scorer = StreamingScorer(runner.model)
        threshold = default_threshold(Path(runner.source), self.opts.alert_threshold)
        self.tracker = AlertTracker(self.opts.classes, self.opts.window_s, threshold)
        self.use_chat = chat and "chat" in self.modalities
        self.start_time = start_time  # the stream's wall-clock start: chat lines may then give ISO-8601 times
        self._chat: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        self.n_windows = self.n_alerts = self.late_chat = 0
        if self.use_chat:
            from mmapps_domains.surveillance.text_embed import embed_texts

            embed_texts(["warm-up"])  # the text model loads before the first window

    def add_chat(self, record: Any) -> dict | None:
        """Keep one chat line for its window; an error frame for a bad or late line (its text never echoed)."""
        from mmapps_domains.surveillance.chat import _message

        try:
            message = _message(record, self.start_time, None)
        except ValueError as err:
            return {"type": "error", "message": f"chat line dropped: {err}"}
        window = int(message.t // self.spec.window_s)
        with self._lock:
            if window < self.n_windows:
                self.late_chat += 1
                return {"type": "error", "message": f"chat line for window {window} arrived after it was scored: dropped "
                        "(send a segment's chat lines before the segment)"}
            self._chat.setdefault(window, []).append(message.text)
        return None

    def _inputs(self, item: Any) -> dict[str, Any]:
        from mmapps_domains.surveillance.audio import log_mel
        from mmapps_domains.surveillance.dataset import absent_or, video_tensor
        from mmapps_domains.surveillance.text_embed import (
            EMBED_DIM,
            embed_texts,
            pooled_chat_vector,
        )

        inputs: dict[str, Any] = {"video": video_tensor(item.frames[None], self.opts.motion_channel)}
        inputs["audio"] = absent_or(log_mel(item.audio[None], self.spec) if item.audio is not None else None, (self.spec.n_mels, self.spec.mel_frames))
        chat_vec = None
        if self.use_chat:
            with self._lock:
                texts = self._chat.pop(item.index, [])
            embeddings = embed_texts(texts) if texts else np.zeros((0, EMBED_DIM), np.float32)
            chat_vec = pooled_chat_vector(embeddings)[None]  # (1, 385)
        inputs["chat"] = absent_or(chat_vec, (EMBED_DIM + 1,))
        return inputs

    def score(self, item: Any, send_scores: bool = False) -> list[dict]:
        """The messages of one window: its scores (when asked) and the alerts it closes."""
        import torch

        from mmapps.data import Sample, collate_samples

        inputs = self._inputs(item)
        sample = Sample("live", "live", {m: inputs[m] for m in self.modalities}, meta={"window_starts": [item.start]})
        scores = torch.sigmoid(self.scorer.step(collate_samples([sample], self.layouts))).numpy()
        with self._lock:
            self.n_windows = item.index + 1
        out = [{"type": "window", "index": item.index, "start": item.start, "scores": scores.tolist()}] if send_scores else []
        alerts = self.tracker.update(item.index, scores)
        self.n_alerts += len(alerts)
        self.metrics.observe(self.runner.domain.name, self.runner.version, {"events": scores[None]},  # (1, C) of task events
                             {"present.audio": item.audio is not None, "present.chat": self.use_chat})
        return out + [{"type": "alert", **a} for a in alerts]

    def finish(self) -> list[dict]:
        """The alerts still open at the end of the stream."""
        alerts = self.tracker.finish()
        self.n_alerts += len(alerts)
        return [{"type": "alert", **a} for a in alerts]
