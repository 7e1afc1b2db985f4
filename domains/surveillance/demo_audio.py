"""The demo's synthetic sound track: background noise, benign sounds, and event sounds.

Event sounds (only for events the microphone hears): shouting during a fight (harmonic voices
with vibrato, in bursts), a bang when someone falls, breaking glass when the zone is entered.
Benign sounds (a car horn, footsteps, a door) happen at random in every clip.
"""

from __future__ import annotations

import numpy as np

from mmapps_domains.surveillance.demo_scene import Event


def _add(track: np.ndarray, sound: np.ndarray, at: int) -> None:
    """Mix ``sound`` in from sample ``at`` (which may be negative: a sound begun before the clip)."""
    lo, hi = max(at, 0), min(track.size, at + sound.size)
    if lo < hi:
        track[lo:hi] += sound[lo - at : hi - at]


def shout(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(250, 450) * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = np.minimum(1, np.minimum(t, t[::-1]) * 20)
    return (0.25 * voice * env).astype(np.float32)


def bang(rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(0.5 * sr)) / sr
    body = np.sin(2 * np.pi * rng.uniform(50, 90) * t) + 0.5 * rng.normal(size=t.size)
    return (0.7 * body * np.exp(-t * 12)).astype(np.float32)


def glass(rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(0.8 * sr)) / sr
    noise = np.diff(rng.normal(size=t.size + 1))  # high-passed crackle
    rings = sum(np.sin(2 * np.pi * rng.uniform(2500, 6000) * t) for _ in range(4))
    return (0.3 * (noise + 0.5 * rings) * np.exp(-t * 6)).astype(np.float32)


def benign(rng: np.random.Generator, sr: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # car horn: steady two-tone
        t = np.arange(int(0.6 * sr)) / sr
        return (0.15 * (np.sin(2 * np.pi * 410 * t) + np.sin(2 * np.pi * 500 * t))).astype(np.float32)
    if kind == 1:  # footsteps: soft clicks
        out = np.zeros(int(1.0 * sr), np.float32)
        for k in range(4):
            out[int(k * 0.25 * sr) : int(k * 0.25 * sr) + 200] += 0.08 * rng.normal(size=200)
        return out
    t = np.arange(int(0.3 * sr)) / sr  # door: short low knock
    return (0.2 * np.sin(2 * np.pi * 150 * t) * np.exp(-t * 30)).astype(np.float32)


def render_audio(events: list[Event], duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 track of ``duration`` s with the sounds of the events heard by ``"audio"``."""
    n = int(round(duration * sr))
    white = rng.normal(size=n)
    brown = np.cumsum(white) / np.sqrt(sr)
    track = (rng.uniform(0.01, 0.03) * white + 0.05 * (brown - np.convolve(brown, np.ones(400) / 400, "same"))).astype(np.float32)
    for _ in range(rng.integers(0, 3)):
        _add(track, benign(rng, sr), int(rng.uniform(0, duration - 1) * sr))
    for ev in events:
        if "audio" not in ev.seen_by:
            continue
        if ev.label == "fight":
            at = ev.start
            while at < ev.end - 0.2:
                length = rng.uniform(0.3, 0.8)
                _add(track, shout(rng, min(length, ev.end - at), sr), int(at * sr))
                at += length + rng.uniform(0.05, 0.4)
        elif ev.label == "fall":
            _add(track, bang(rng, sr), int((ev.start + rng.uniform(0, 0.3)) * sr))
        elif ev.label == "intrusion":
            _add(track, glass(rng, sr), int((ev.start + rng.uniform(0, 0.5)) * sr))
    return np.clip(track, -1, 1)
