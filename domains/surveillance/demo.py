"""Demo data: real mp4 clips (h264 + aac), microphones, chat logs and the manifest of a synthetic scene.

Each clip lasts ``DURATION`` s at ``FPS`` fps. About a third of the clips are normal; the others
hold one or two events (fight, fall, intrusion). A clip is a cut of a continuous recording: an
event may have begun before the clip or go on after it, and its position is uniform, so the
window index alone says nothing about the labels (see `sample_events`). Every event is perceived by a random non-empty
subset of {video, audio, chat} (camera 60 %, microphone 60 %, a chat report 50 %), so each
modality alone misses events that the others catch and fusion measurably wins. Chat reports come
0.5-2.5 s late, with typos; some reports are false. A few clips carry their sound in a separate
WAV file instead of the mp4 track, a few have no audio at all, some chat logs are CSV with
ISO-8601 times (the clip's ``start_time`` is in the manifest).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from mmapps_domains.surveillance.demo_audio import render_audio
from mmapps_domains.surveillance.demo_scene import Event, render_clip
from mmapps_domains.surveillance.encode import write_clip

CLASSES = ("fight", "fall", "intrusion")
DURATION, FPS, SAMPLE_RATE = 10.0, 10, 16000
USERS = ("guard_mike", "op.sarah", "J0hnny", "night-desk", "Ana R.", "visitor42")
CHATTER = (
    "camera 2 looks fine", "anyone seen the bus?", "lunch at 12?", "shift change in 10", "all quiet at the east door",
    "coffee machine broken again", "checking parking lot", "ok thanks", "radio check", "lights flickering at gate 1",
)
REPORTS = {
    "fight": ("fight near gate 3", "two guys fighting by the entrance", "figth at the gate!!", "people punching each other near gate 3"),
    "fall": ("someone fell down near the stairs", "sombody fell, needs help", "person on the ground by the benches", "man collapsed"),
    "intrusion": ("someone in the restricted zone", "intruder climbed into the fenced area", "person inside the yelow zone", "guy jumped the fence"),
}
PERCEPTION = {"video": 0.6, "audio": 0.6, "chat": 0.5}
MIN_INSIDE = 1.0  # seconds of every event inside its clip


def sample_events(rng: np.random.Generator, duration: float = DURATION) -> list[Event]:
    """0 (a third of clips), 1 or 2 non-overlapping events, each seen by a random non-empty set of modalities.

    Event times are on the recording's time line, of which the clip shows ``[0, duration)``: a start
    is uniform over every position that keeps at least ``MIN_INSIDE`` s of the event inside the
    clip, so an event may begin before the clip (its onset sounds and chat report are then not in
    it) or end after it. Placing events only well inside the clip would let a model score windows
    by their index (absolute time since the clip start) instead of by what it sees and hears.
    """
    count = rng.choice([0, 1, 2], p=[0.34, 0.46, 0.2])
    events: list[Event] = []
    for _ in range(count):
        length = rng.uniform(2.5, 4.5)
        for _attempt in range(20):  # a second event must leave a 1.5 s gap to the first
            start = rng.uniform(MIN_INSIDE - length, duration - MIN_INSIDE)
            if all(start + length + 1.5 <= ev.start or ev.end + 1.5 <= start for ev in events):
                break
        else:
            break
        seen = frozenset(m for m, p in PERCEPTION.items() if rng.random() < p) or frozenset({rng.choice(list(PERCEPTION))})
        events.append(Event(str(rng.choice(CLASSES)), round(start, 2), round(start + length, 2), seen))
    return sorted(events, key=lambda ev: ev.start)


def chat_messages(events: list[Event], rng: np.random.Generator, duration: float = DURATION) -> list[tuple[float, str, str]]:
    """(t, user, text) chatter, late reports of the events chat perceives, and sometimes a false report."""
    msgs = [(float(rng.uniform(0, duration)), str(rng.choice(USERS)), str(rng.choice(CHATTER))) for _ in range(rng.integers(1, 5))]
    for ev in events:
        if "chat" in ev.seen_by:
            t = min(ev.start + rng.uniform(0.5, 2.5), ev.end - 0.1)
            if not 0 <= t < duration:  # reported before or after the clip
                continue
            msgs.append((float(t), str(rng.choice(USERS)), str(rng.choice(REPORTS[ev.label]))))
            if rng.random() < 0.4:
                msgs.append((float(min(t + rng.uniform(0.3, 1.5), duration - 0.01)), str(rng.choice(USERS)), "on it"))
    if rng.random() < 0.12:
        label = str(rng.choice(CLASSES))
        msgs.append((float(rng.uniform(1, duration - 0.5)), str(rng.choice(USERS)), str(rng.choice(REPORTS[label])) + "?"))
    return sorted(msgs)


def write_demo_clip(root: Path, index: int, split: str, rng: np.random.Generator, duration: float = DURATION) -> dict:
    """Write one clip's files under ``root`` and return its manifest entry."""
    clip_id = f"clip{index:04d}"
    events = sample_events(rng, duration)
    frames = render_clip(events, duration, FPS, rng)
    audio = render_audio(events, duration, SAMPLE_RATE, rng)
    audio_mode = rng.choice(["track", "wav", "none"], p=[0.8, 0.12, 0.08])
    write_clip(root / "clips" / f"{clip_id}.mp4", frames, FPS, audio if audio_mode == "track" else None, SAMPLE_RATE)
    entry: dict = {"id": clip_id, "clip": f"clips/{clip_id}.mp4", "split": split}
    if audio_mode == "wav":
        import soundfile

        soundfile.write(str(root / "mic" / f"{clip_id}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
        entry["audio"] = f"mic/{clip_id}.wav"
    start = datetime(2026, 5, 1, 8, 0, 0) + timedelta(minutes=7 * index)
    messages = chat_messages(events, rng, duration)
    if rng.random() < 0.25:
        entry["chat"] = f"chat/{clip_id}.csv"
        entry["start_time"] = start.isoformat()
        with open(root / entry["chat"], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["t", "user", "text"])
            for t, user, text in messages:
                writer.writerow([(start + timedelta(seconds=t)).isoformat(timespec="milliseconds"), user, text])
    else:
        entry["chat"] = f"chat/{clip_id}.jsonl"
        with open(root / entry["chat"], "w", encoding="utf-8") as handle:
            for t, user, text in messages:
                handle.write(json.dumps({"t": round(t, 2), "user": user, "text": text}) + "\n")
    entry["labels"] = sorted({ev.label for ev in events})
    entry["segments"] = [[max(ev.start, 0.0), min(ev.end, duration), ev.label] for ev in events]  # the part inside the clip
    entry["perceived_by"] = [sorted(ev.seen_by) for ev in events]
    return entry


def write_demo_data(out: Path, n: int = 120, seed: int = 0, duration: float = DURATION) -> Path:
    """Write ``n`` demo clips (60 % train, 20 % val, 20 % test) with ``manifest.jsonl``.

    Args:
        out: output folder (created).
        n: number of clips.
        seed: random seed (same seed -> same data).
        duration: seconds per clip (longer clips test models on long streams).

    Returns:
        the data root (``out``) to give ``build_datasets``.
    """
    out = Path(out)
    for sub in ("clips", "mic", "chat"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        entries.append(write_demo_clip(out, i, split, rng, duration))
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")
    return out
