"""Synthetic chest-radiograph phantoms in which findings are drawn as visible patterns.

Brightness is in display space: 0 = black (air), 1 = white (bone, fluid, metal). Every finding
drawn on a frontal view records its box ``(x0, y0, x1, y1)`` in image fractions, for the
pointing-game check of saliency maps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Findings this module can draw; the demo decides which of them the image shows.
DRAWABLE = (
    "Cardiomegaly",
    "Enlarged Cardiomediastinum",
    "Pleural Effusion",
    "Edema",
    "Consolidation",
    "Lung Lesion",
    "Pneumothorax",
    "Support Devices",
)
Box = tuple[float, float, float, float]


class Phantom(NamedTuple):
    """A rendered view: brightness ``(H, W)`` float in [0, 1] and finding -> box (frontal views only)."""

    image: np.ndarray
    boxes: dict[str, Box]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    from scipy.ndimage import zoom

    coarse = rng.standard_normal((cells, cells))
    out = zoom(coarse, (shape[0] / cells, shape[1] / cells), order=1)
    return out[: shape[0], : shape[1]]


def _ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1.0


def render_frontal(rng: np.random.Generator, height: int, width: int, findings: set[str]) -> Phantom:
    """Render a PA / AP chest phantom.

    Args:
        rng: random generator (anatomy jitter, side and position of findings, noise).
        height, width: image size in pixels.
        findings: which of `DRAWABLE` to draw.

    Returns:
        `Phantom` with the boxes of the drawn findings.
    """
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    v, u = v / height, u / width
    j = lambda scale: 1.0 + rng.uniform(-scale, scale)  # noqa: E731 - anatomy jitter factor
    img = np.full((height, width), 0.03)
    img[_ellipse(u, v, 0.5, 0.55, 0.47 * j(0.03), 0.52)] = 0.42
    lung_r, lung_l = (0.31 * j(0.02), 0.45, 0.145 * j(0.05), 0.29 * j(0.04)), (0.69 * j(0.02), 0.45, 0.145 * j(0.05), 0.29 * j(0.04))
    in_lung = _ellipse(u, v, *lung_r) | _ellipse(u, v, *lung_l)
    markings = 0.04 * _smooth_noise(rng, (height, width), 24)
    img[in_lung] = 0.14 + markings[in_lung]
    for k in range(9):  # posterior ribs: shallow arcs inside the lungs
        rib_v = 0.2 + 0.062 * k + 0.09 * (u - 0.5) ** 2
        img[in_lung & (np.abs(v - rib_v) < 0.008)] += 0.1
    boxes: dict[str, Box] = {}
    med_w = 0.13 if "Enlarged Cardiomediastinum" in findings else 0.065
    mediastinum = (np.abs(u - 0.5) < med_w) & (v > 0.12) & (v < 0.56)
    img[mediastinum] = 0.68
    if "Enlarged Cardiomediastinum" in findings:
        boxes["Enlarged Cardiomediastinum"] = (0.5 - med_w, 0.12, 0.5 + med_w, 0.56)
    heart_rx = (0.215 if "Cardiomegaly" in findings else 0.125) * j(0.05)
    heart = (0.54, 0.63, heart_rx, 0.12 * j(0.05))
    img[_ellipse(u, v, *heart)] = 0.72
    if "Cardiomegaly" in findings:
        boxes["Cardiomegaly"] = (heart[0] - heart[2], heart[1] - heart[3], heart[0] + heart[2], heart[1] + heart[3])
    img[np.abs(u - 0.5) < 0.022] = np.maximum(img[np.abs(u - 0.5) < 0.022], 0.8)  # spine
    img[(v > 0.76) & _ellipse(u, v, 0.5, 0.55, 0.47, 0.52)] = 0.5  # below the diaphragm
    _draw_lung_findings(rng, img, u, v, (lung_r, lung_l), findings, boxes)
    if "Support Devices" in findings:
        t = np.linspace(0, 1, 400)
        xs, ys = 0.44 + 0.08 * t + rng.uniform(-0.02, 0.02), 0.02 + 0.55 * t
        rows = np.clip((ys * height).astype(int), 0, height - 1)
        cols = np.clip((xs * width).astype(int), 0, width - 1)
        for dr in range(-1, 2):
            img[np.clip(rows + dr, 0, height - 1), cols] = 0.97
        img[_ellipse(u, v, xs[-1], ys[-1], 0.025, 0.02)] = 0.97
        boxes["Support Devices"] = (xs.min() - 0.03, 0.0, xs.max() + 0.03, ys.max() + 0.03)
    img = img * rng.uniform(0.9, 1.05) + 0.015 * rng.standard_normal(img.shape)
    return Phantom(np.clip(img, 0.0, 1.0), boxes)


def _draw_lung_findings(rng, img, u, v, lungs, findings: set[str], boxes: dict[str, Box]) -> None:
    side = int(rng.integers(0, 2))
    cx, cy, rx, ry = lungs[side]
    lung = _ellipse(u, v, cx, cy, rx, ry)
    if "Pleural Effusion" in findings:
        base = cy + ry
        level = base - rng.uniform(0.22, 0.3) - 0.08 * ((u - cx) / rx) ** 2  # meniscus: fluid climbs laterally
        fluid = lung & (v > level)
        img[fluid] = 0.68 + 0.02 * rng.standard_normal()
        boxes["Pleural Effusion"] = (cx - rx, float(np.min(v[fluid])) if fluid.any() else base - 0.2, cx + rx, base)
    if "Edema" in findings:
        both = _ellipse(u, v, *lungs[0]) | _ellipse(u, v, *lungs[1])
        haze = 0.3 * np.exp(-(((u - 0.5) / 0.2) ** 2 + ((v - 0.45) / 0.13) ** 2))
        haze *= 1.0 + 0.3 * _smooth_noise(rng, img.shape, 16)
        img[both] += haze[both]
        boxes["Edema"] = (0.28, 0.3, 0.72, 0.6)
    other = lungs[1 - side]
    ox, oy, orx, ory = other
    if "Consolidation" in findings:
        px, py = ox + rng.uniform(-0.4, 0.4) * orx, oy + rng.uniform(-0.1, 0.5) * ory
        blob = _ellipse(u, v, px, py, 0.075, 0.065) & _ellipse(u, v, *other)
        blob &= _smooth_noise(rng, img.shape, 40) > -0.6
        img[blob] = 0.6 + 0.05 * _smooth_noise(rng, img.shape, 30)[blob]
        boxes["Consolidation"] = (px - 0.075, py - 0.065, px + 0.075, py + 0.065)
    if "Lung Lesion" in findings:
        lx, ly = cx + rng.uniform(-0.45, 0.45) * rx, cy + rng.uniform(-0.6, 0.1) * ry
        r = rng.uniform(0.035, 0.05)
        img[_ellipse(u, v, lx, ly, r, r * img.shape[1] / img.shape[0])] = 0.78
        boxes["Lung Lesion"] = (lx - r - 0.01, ly - r - 0.01, lx + r + 0.01, ly + r + 0.01)
    if "Pneumothorax" in findings:
        apex = _ellipse(u, v, ox, oy, orx, ory) & (v < oy)
        lateral = apex & ((u - ox) * (1 if ox > 0.5 else -1) > -0.3 * orx)
        img[lateral] = 0.01
        edge = lateral & ~np.roll(lateral, 2, axis=1) | lateral & ~np.roll(lateral, -2, axis=1)
        img[edge] = 0.45
        boxes["Pneumothorax"] = (ox - orx, oy - ory, ox + orx, oy)


def render_lateral(rng: np.random.Generator, height: int, width: int, findings: set[str]) -> np.ndarray:
    """Render a lateral phantom (cardiac size and effusion visible, no boxes recorded)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    v, u = v / height, u / width
    img = np.full((height, width), 0.03)
    img[_ellipse(u, v, 0.5, 0.55, 0.42, 0.5)] = 0.45
    lung = _ellipse(u, v, 0.5, 0.47, 0.3, 0.32)
    img[lung] = 0.16 + 0.04 * _smooth_noise(rng, (height, width), 20)[lung]
    img[_ellipse(u, v, 0.36, 0.62, 0.2 if "Cardiomegaly" in findings else 0.12, 0.13)] = 0.7
    if "Pleural Effusion" in findings:
        img[lung & (v > 0.66) & (u > 0.55)] = 0.6
    img[np.abs(u - 0.8) < 0.03] = 0.8  # spine, posterior
    img += 0.015 * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0)
