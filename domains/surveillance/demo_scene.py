"""The demo's synthetic camera: person-like figures walking, fighting, falling, entering a marked zone.

Figures are drawn as a body rectangle with a head on a static background with a marked
restricted zone (top right). Events:

- ``fight``: two figures meet and move erratically and fast around each other;
- ``fall``: a figure drops to a lying pose and stays still;
- ``intrusion``: a figure walks into the marked zone and stays there.

An event the camera does not see happens off-screen: its figures are simply not drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

H, W = 64, 64
ZONE = (4, 44, 22, 62)  # y0, x0, y1, x1 of the restricted zone


@dataclass
class Event:
    """One demo event: class, [start, end) seconds, which modalities perceive it."""

    label: str
    start: float
    end: float
    seen_by: frozenset


def background(rng: np.random.Generator) -> np.ndarray:
    """Static scene: a gradient floor, a few fixed blobs, the zone outlined in yellow."""
    base = rng.uniform(60, 110)
    y = np.linspace(0, 1, H)[:, None, None]
    img = np.broadcast_to(base + 40 * y, (H, W, 3)).copy()
    img[..., 2] *= rng.uniform(0.8, 1.1)
    for _ in range(3):
        cy, cx = rng.integers(28, H - 6), rng.integers(2, W - 8)
        img[cy : cy + 5, cx : cx + 7] = rng.uniform(40, 160, 3)
    y0, x0, y1, x1 = ZONE
    img[y0, x0:x1] = img[y1, x0:x1] = (230, 220, 40)
    img[y0:y1, x0] = img[y0:y1, x1 - 1] = (230, 220, 40)
    return img


def draw_figure(img: np.ndarray, x: float, y: float, colour: np.ndarray, lying: bool = False) -> None:
    """A standing (4x10 body + 3x3 head) or lying (10x4) figure whose feet are at (x, y)."""
    xi, yi = int(round(x)), int(round(y))
    if lying:
        img[max(yi - 4, 0) : max(yi, 0), max(xi - 5, 0) : max(xi + 5, 0)] = colour
        img[max(yi - 4, 0) : max(yi - 1, 0), max(xi + 5, 0) : max(xi + 8, 0)] = (230, 190, 160)
        return
    img[max(yi - 10, 0) : max(yi, 0), max(xi - 2, 0) : max(xi + 2, 0)] = colour
    img[max(yi - 14, 0) : max(yi - 11, 0), max(xi - 1, 0) : max(xi + 2, 0)] = (230, 190, 160)


def _walker(rng: np.random.Generator, n: int, fps: int) -> np.ndarray:
    """Positions (n, 2) of a figure walking at a steady speed, bouncing off the walls, outside the zone."""
    pos = np.array([rng.uniform(6, 40), rng.uniform(30, 60)])
    vel = rng.uniform(-8, 8, 2) / fps
    out = np.zeros((n, 2))
    for i in range(n):
        pos = pos + vel
        for d, (lo, hi) in enumerate(((4, 40), (28, 62))):
            if not lo <= pos[d] <= hi:
                vel[d] = -vel[d]
                pos[d] = np.clip(pos[d], lo, hi)
        out[i] = pos
    return out


def render_clip(events: list[Event], duration: float, fps: int, rng: np.random.Generator) -> np.ndarray:
    """Render the frames of one clip.

    Args:
        events: the clip's events (only those with "video" in ``seen_by`` are drawn).
        duration: seconds.
        fps: frame rate.
        rng: random generator (owned by the caller).

    Returns:
        uint8 (T, H, W, 3) RGB frames.
    """
    n = int(round(duration * fps))
    t = np.arange(n) / fps
    bg = background(rng)
    tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # positions (n, 2), lying (n,), visible (n,)
    for _ in range(rng.integers(1, 4)):  # bystanders, some walking briskly past each other
        tracks.append((_walker(rng, n, fps), np.zeros(n, bool), np.ones(n, bool)))
    for ev in events:
        if "video" not in ev.seen_by:
            continue
        on = (t >= ev.start - 1.5) & (t < ev.end + 1.0)
        if ev.label == "fight":
            centre = np.array([rng.uniform(10, 36), rng.uniform(36, 58)])
            for side in (-1, 1):
                pos = _walker(rng, n, fps)
                active = (t >= ev.start) & (t < ev.end)
                approach = (t >= ev.start - 1.5) & (t < ev.start)
                frac = np.clip((t - (ev.start - 1.5)) / 1.5, 0, 1)[:, None]
                pos = np.where(approach[:, None], (1 - frac) * pos + frac * (centre + [3 * side, 0]), pos)
                jitter = rng.normal(0, 2.5, (n, 2))
                pos = np.where(active[:, None], centre + [3 * side, 0] + jitter, pos)
                tracks.append((pos, np.zeros(n, bool), on))
        elif ev.label == "fall":
            pos = _walker(rng, n, fps)
            down = (t >= ev.start) & (t < ev.end)
            still = np.where(down[:, None], pos[np.searchsorted(t, ev.start).clip(max=n - 1)], pos)
            tracks.append((still, down, on))
        elif ev.label == "intrusion":
            pos = _walker(rng, n, fps)
            target = np.array([rng.uniform(47, 58), rng.uniform(17, 21)])
            frac = np.clip((t - (ev.start - 1.5)) / 1.5, 0, 1)[:, None]
            inside = np.where((t >= ev.start)[:, None], target + rng.normal(0, 0.4, (n, 2)), (1 - frac) * pos + frac * target)
            tracks.append((np.where((t >= ev.start - 1.5)[:, None], inside, pos), np.zeros(n, bool), on))
    colours = rng.uniform(20, 255, (len(tracks), 3))
    frames = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        img = bg.copy()
        for (pos, lying, visible), colour in zip(tracks, colours):
            if visible[i]:
                draw_figure(img, pos[i, 0], pos[i, 1], colour, bool(lying[i]))
        img += rng.normal(0, 3, img.shape)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames
