"""Grad-CAM over test radiographs, batched over studies and findings, and the pointing game on demo data.

The maps are MONAI's ``GradCAM`` (gradient-weighted activations of one layer, ReLU, bilinear
upsampling) computed for many (study, finding) pairs in one forward and one backward: each pair is
one row of the batch (a study's image repeated per finding), the scores ``logit[row, finding]`` are
summed, and in eval mode a row's logit depends only on its own inputs, so the gradient of the sum
at a row's activations is that row's own Grad-CAM gradient.

The pointing game (Zhang et al., 2016) counts a hit when the saliency maximum for a positive
finding falls inside the box where the demo generator drew it (``locations.json``). Chance is the
mean share of the image the boxes cover: a uniform random point hits that often.

Figures show the radiograph under the map only where its file says ``BurnedInAnnotation NO``: where
it is YES or absent the pixels may carry burned-in identifiers, so the map is drawn alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MAX_FIGURE = 6
MAX_POINTS = 80
TARGET_STRIDE = 8
PAIRS_PER_BATCH = 16  # (study, finding) rows per forward/backward


class ImageLogits(nn.Module):
    """Wraps the fusion model as ``f(image (B, 1, S, S)) -> findings logits (B, L)`` for MONAI's CAM.

    The note stays fixed, so the map explains the image's share. ``note``: one note for every row
    (None: no note), or one per row of the batch.
    """

    def __init__(self, model: nn.Module, note: str | None | Sequence[str | None]) -> None:
        super().__init__()
        self.model = model
        self.note = note

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from mmapps.data import Batch, ModalityBatch

        B = image.shape[0]
        ones = torch.ones(B, dtype=torch.bool, device=image.device)
        inputs = {"image": ModalityBatch(image.unsqueeze(1), ones, mask=ones.unsqueeze(1))}  # (B, 1, 1, S, S)
        if "note" in getattr(self.model, "modalities", []):
            notes = [self.note] * B if self.note is None or isinstance(self.note, str) else list(self.note)
            present = torch.tensor([bool(n) for n in notes], dtype=torch.bool, device=image.device)
            inputs["note"] = ModalityBatch([n or "" for n in notes], present)
        batch = Batch(inputs, {}, [str(i) for i in range(B)], [str(i) for i in range(B)], [{}] * B)
        return self.model(batch)["findings"]


def scale_to_unit(cam: torch.Tensor) -> torch.Tensor:
    """Min-max scale each map of ``(B, 1, H, W)`` to [0, 1], high = salient.

    MONAI's default CAM post-processing maps (min, max) to (1, 0), flipping the map (its docstring
    says so); the pointing game and the overlays need the unflipped order. A constant map stays 0.
    """
    flat = cam.flatten(1)  # (B, H*W)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(cam)


def batched_gradcam(model: nn.Module, layer: str, images: torch.Tensor, notes: Sequence[str | None], findings: Sequence[int]) -> torch.Tensor:
    """Grad-CAM maps ``(P, 1, S, S)`` in [0, 1] (high = salient) of P (image, note, finding) rows, one forward and one backward.

    Equal to MONAI's ``GradCAM(ImageLogits(model, note), layer, postprocessing=scale_to_unit)(image, class_idx=finding)``
    row by row (the model in eval mode). Only the graph above ``layer`` is differentiated, and no
    parameter gradient is accumulated. A row whose activations no gradient reaches gets a zero map.

    Args:
        model: the fusion model, in eval mode.
        layer: target module name under `ImageLogits` (see `target_layer`).
        images: ``(P, 1, S, S)`` preprocessed images.
        notes: P notes (None: no note).
        findings: P finding indices.
    """
    wrapper = ImageLogits(model, list(notes))
    store: dict[str, torch.Tensor] = {}
    hook = dict(wrapper.named_modules())[layer].register_forward_hook(lambda _m, _i, out: store.__setitem__("acti", out))
    try:
        with torch.enable_grad():
            logits = wrapper(images.float().requires_grad_(True))  # the input needs grad, so a frozen trunk still has a graph
            acti = store["acti"]  # (P, C, h, w)
            index = torch.as_tensor(list(findings), device=logits.device).view(-1, 1)
            (grad,) = torch.autograd.grad(logits.gather(1, index).sum(), acti, allow_unused=True)
    finally:
        hook.remove()
    if grad is None:
        return torch.zeros_like(images, dtype=torch.float32)
    weights = grad.flatten(2).mean(2)[..., None, None]  # (P, C, 1, 1)
    cam = F.relu((weights * acti).sum(1, keepdim=True)).detach()  # (P, 1, h, w)
    return scale_to_unit(F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False))


def pixels_verified(path: Path) -> bool:
    """True only when the file's BurnedInAnnotation is ``NO``: YES, absent or an unreadable header may mean burned-in identifiers."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["BurnedInAnnotation"])
    except (InvalidDicomError, OSError, ValueError):
        return False
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "NO"


def target_layer(model: nn.Module, image: torch.Tensor, output_stride: int = TARGET_STRIDE) -> str:
    """Name (for MONAI, under `ImageLogits`) of the deepest image-trunk stage whose output stride is <= ``output_stride``.

    The last stage of a ResNet at 128 px is a 4 x 4 grid, coarser than most findings' boxes, and
    its Grad-CAM maximum lands on a grid cell's centre; stride 8 (16 x 16 at 128 px) keeps the map
    fine enough to point at a finding. Stages are the trunk's modules two levels deep at most
    (ResNet layers and blocks, DenseNet blocks and transitions), in the order they run.

    Args:
        model: the fusion model (its ``encoders["image"].trunk`` is searched).
        image: one preprocessed image ``(1, C, S, S)``, to measure each stage's output size.
        output_stride: largest allowed input side / map side.
    """
    trunk = model.encoders["image"].trunk
    ran: list[tuple[str, int]] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: ran.append((name, out.shape[-1])) if torch.is_tensor(out) and out.dim() == 4 else None)
        for name, module in trunk.named_modules() if name and name.count(".") <= 1
    ]
    try:
        with torch.no_grad():
            trunk(image.float())
    finally:
        for hook in hooks:
            hook.remove()
    fine = [name for name, side in ran if side * output_stride >= image.shape[-1]]
    return f"model.encoders.image.trunk.{fine[-1]}" if fine else "model.encoders.image.proj"


def box_to_pixels(box: list[float], height: int, width: int, size: int) -> tuple[float, float, float, float]:
    """Box in original-image fractions -> pixel box after resize-longest-side to ``size`` and centre padding."""
    scale = size / max(height, width)
    h, w = round(height * scale), round(width * scale)
    top, left = (size - h) // 2, (size - w) // 2
    x0, y0, x1, y1 = box
    return left + x0 * w, top + y0 * h, left + x1 * w, top + y1 * h


class _Pair(NamedTuple):
    """One (study, finding) row: whether it counts in the pointing game and whether it is drawn."""

    index: int
    finding: int
    point: bool
    figure: bool


def plan_pairs(studies: Sequence[Any], names: Sequence[str], boxes_of: Sequence[dict]) -> list[_Pair]:
    """The (study, finding) pairs to map, in study order: up to 3 positive findings with a drawn box
    per study (the top finding where none has one, while figures are wanted), until `MAX_POINTS`
    pointing-game pairs and `MAX_FIGURE` figures are planned."""
    pairs: list[_Pair] = []
    tried = figures = 0
    for index, study in enumerate(studies):
        if tried >= MAX_POINTS and figures >= MAX_FIGURE:
            break
        boxes = boxes_of[index]
        positives = [j for j, v in enumerate(study.targets) if v == 1 and names[j] in boxes]
        wanted = positives or ([int(np.nanargmax(np.nan_to_num(study.targets, nan=-1)))] if figures < MAX_FIGURE else [])
        for j in wanted[:3]:
            point, figure = names[j] in boxes and tried < MAX_POINTS, figures < MAX_FIGURE
            tried, figures = tried + point, figures + figure
            if point or figure:
                pairs.append(_Pair(index, j, point, figure))
    return pairs


def gradcam_section(ctx: Any):
    """Grad-CAM figure over a few test images and, on demo data, the pointing-game hit rate."""
    from mmapps.report import Section

    model, dataset = ctx.model, ctx.test_dataset
    if model is None or dataset is None or "image" not in getattr(model, "encoders", {}):
        return Section("Grad-CAM", "Not computed: the model has no image encoder or no test data was passed.")
    studies = getattr(dataset, "studies", None) or getattr(getattr(dataset, "dataset", None), "studies", [])
    root = Path(ctx.cfg.data.root) if ctx.cfg.data.root else None
    locations = json.loads((root / "locations.json").read_text()) if root and (root / "locations.json").is_file() else {}
    rel_of = [study.image_paths[0].relative_to(root).as_posix() if root and study.image_paths[0].is_relative_to(root) else "" for study in studies]
    boxes_of = [locations.get(rel, {}) for rel in rel_of]
    names = list(ctx.domain.primary_task.labels)
    device = next(model.parameters()).device
    model.eval()
    pairs = plan_pairs(studies, names, boxes_of)
    images: dict[int, torch.Tensor] = {}  # study index -> first (frontal when present) image (1, S, S)
    layer = None
    figures, chance, flat_maps = [], [], 0
    hits_of: dict[str, list[int]] = {}  # finding -> [hits, tried]
    tried = 0
    for start in range(0, len(pairs), PAIRS_PER_BATCH):
        chunk = pairs[start : start + PAIRS_PER_BATCH]
        for pair in chunk:
            if pair.index not in images:
                images[pair.index] = dataset[pair.index].inputs["image"][0].to(device)
        batch = torch.stack([images[pair.index] for pair in chunk])  # (P, 1, S, S)
        layer = layer or target_layer(model, batch[:1])
        maps = batched_gradcam(model, layer, batch, [studies[p.index].note for p in chunk], [p.finding for p in chunk])
        for pair, saliency in zip(chunk, maps[:, 0].cpu().numpy()):  # (S, S) each
            study, boxes, name, size = studies[pair.index], boxes_of[pair.index], names[pair.finding], batch.shape[-1]
            if pair.point:
                x0, y0, x1, y1 = box_to_pixels(boxes[name], *_original_shape(study, dataset), size)
                r, c = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
                flat = float(saliency.max() - saliency.min()) < 1e-6  # no gradient reached the layer: a miss
                flat_maps += int(flat)
                record = hits_of.setdefault(name, [0, 0])
                record[0] += int(not flat and x0 <= c <= x1 and y0 <= r <= y1)
                record[1] += 1
                chance.append(max(0.0, min(x1, size) - max(x0, 0)) * max(0.0, min(y1, size) - max(y0, 0)) / size**2)
                tried += 1
            if pair.figure:
                shown = images[pair.index][0].cpu().numpy() if pixels_verified(study.image_paths[0]) else None
                figures.append((shown, saliency, name, boxes.get(name), _original_shape(study, dataset)))
        following = pairs[start + PAIRS_PER_BATCH : start + PAIRS_PER_BATCH + 1]
        images = {i: im for i, im in images.items() if following and i >= following[0].index}  # pairs run in study order
    path = _plot(figures, Path(ctx.figures_dir))
    withheld = sum(1 for figure in figures if figure[0] is None)
    text = (f"Grad-CAM (MONAI's `GradCAM` maps, batched over studies and findings) of the image encoder at `{(layer or '').removeprefix('model.')}` (the deepest stage with "
            f"output stride <= {TARGET_STRIDE}) for positive findings of test studies, the note held fixed."
            + (f" {withheld} of {len(figures)} figure(s) show the map without the radiograph: the file's BurnedInAnnotation is YES or "
               "absent, so its pixels may carry burned-in identifiers." if withheld else ""))
    data: dict[str, Any] = {}
    if tried:
        from mmapps.metrics import wilson_interval

        hits = sum(h for h, _ in hits_of.values())
        rate, base = hits / tried, float(np.mean(chance))
        low, high = wilson_interval(hits, tried)
        data = {"pointing_game_hit_rate": rate, "pointing_game_ci": [low, high], "pointing_game_chance": base,
                "pointing_game_n": tried, "pointing_game_flat_maps": flat_maps, "pointing_game_per_finding": hits_of}
        ctx.metrics.update({"pointing_game/hit_rate": rate, "pointing_game/hit_rate/ci_low": low,
                            "pointing_game/hit_rate/ci_high": high, "pointing_game/chance": base})
        verdict = "above" if low > base else "not clearly above"
        per_finding = ", ".join(f"{name} {h}/{n}" for name, (h, n) in sorted(hits_of.items()))
        text += (f"\n\nPointing game on demo data (Zhang et al., 2016; strict, no tolerance): the saliency maximum falls inside "
                 f"the drawn finding's box in **{hits}/{tried} = {rate:.2f}** (95% Wilson CI [{low:.2f}, {high:.2f}]) of "
                 f"(study, positive finding) pairs; chance (mean share of the image the boxes cover) is {base:.2f}, so "
                 f"localisation is {verdict} chance. Per finding: {per_finding}."
                 + (f" {flat_maps} map(s) were flat (no gradient reached the layer) and count as misses." if flat_maps else ""))
    return Section("Grad-CAM", text, [path] if path else [], data)


def _original_shape(study: Any, dataset: Any) -> tuple[int, int]:
    shape = study.meta.get("original_shape")
    if shape:
        return int(shape[0]), int(shape[1])
    arr, meta = dataset.load(study.image_paths[0])
    return int(meta.get("rows") or arr.shape[-2]), int(meta.get("columns") or arr.shape[-1])


def _plot(figures: list, folder: Path) -> Path | None:
    if not figures:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(3 * len(figures), 3.3))
    for ax, (image, saliency, name, box, shape) in zip(np.atleast_1d(axes), figures):
        if image is not None:
            ax.imshow(image, cmap="gray")
        ax.imshow(saliency, cmap="jet", alpha=0.35 if image is not None else 1.0)  # alone where the pixels are withheld
        if box is not None:
            x0, y0, x1, y1 = box_to_pixels(box, *shape, saliency.shape[-1])
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
        ax.set_title(name if image is not None else f"{name} (pixels withheld)", fontsize=8)
        ax.axis("off")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "medical_gradcam.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
