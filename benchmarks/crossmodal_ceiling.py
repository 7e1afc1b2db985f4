"""How much of a hidden note the image could ever tell: the cross-modal ceiling of the medical demo.

The pretraining reconstructs a hidden note from the other modalities (``pretrain.frozen_text_target``:
the frozen encoder's token features or its mean-pooled sentence embedding). Its held-out loss with the
image present equalled the loss with the image hidden. Is that the model failing, or the data telling
nothing? This measures the ceiling from the data's side, with oracles that know the truth:

- ``position mean``: the per-position mean target of the train studies (the trivial predictor, fitted
  on every train study rather than the pretraining's few statistics batches);
- ``oracle: <group>``: ridge regression of the target on the true state (positive / uncertain /
  negative, one-hot) of a group of findings (``finding_sources.json`` of the demo). ``both`` is what a
  perfect image reader could pass to the note's decoder: the findings the image shows and the note
  tells. ``note-told`` (note-only and both) is what the note says about findings at all;
  ``image-only`` should explain nothing (the note holds only uninformative negations of those).

Fitted on the train split's studies, scored on the test split's (subjects split 80/20 by a fixed
seed), with the objective's own loss: the mean squared error per unit, averaged over real units. Also
the retrieval ceiling: recall@1 among `--gallery` held-out studies (the pretraining report's held-out
size) of an oracle that embeds each study by the true states of the `both` findings, ties broken at
random, against chance.

Writes ``benchmarks/results/crossmodal_ceiling.{json,md}``.

Usage: python benchmarks/crossmodal_ceiling.py [--data-root DIR] [--max-length 64] [--gallery 188]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

STATES = ("positive", "uncertain", "negative")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None, help="a medical demo folder (default: the label-efficiency study's 3200-study demo)")
    parser.add_argument("--max-length", type=int, default=64, help="the note encoder's max_length (the study's: 64)")
    parser.add_argument("--gallery", type=int, default=188)
    parser.add_argument("--ridge", type=float, default=1.0)
    args = parser.parse_args()

    import torch

    from mmapps.models.build import register_core_parts
    from mmapps.plugins import get_domain
    from mmapps.registry import ENCODERS
    from mmapps.workflows.label_efficiency import SETUPS
    from mmapps.workflows.resolve import ensure_data_root, resolve_config

    torch.set_num_threads(1)
    domain = get_domain("medical")
    root = args.data_root or Path(ensure_data_root(resolve_config(domain, "smoke", overrides=SETUPS["medical"]["overrides"]), domain).data.root)
    sources = json.loads((root / "finding_sources.json").read_text())
    studies = _studies(root)
    texts = [s["note"] for s in studies]
    register_core_parts()
    encoder = ENCODERS.get("text_transformer")(dim=16, max_length=args.max_length)
    started = time.perf_counter()
    features, masks = [], []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            f, m = encoder._encode(texts[i : i + 64])
            pad = args.max_length - f.shape[1]
            features.append(torch.nn.functional.pad(f, (0, 0, 0, pad)))
            masks.append(torch.nn.functional.pad(m, (0, pad)))
    encode_s = time.perf_counter() - started
    tokens = torch.nn.functional.layer_norm(torch.cat(features), (features[0].shape[-1],)).numpy()  # (N, L, H), as FrozenNoteObjective
    mask = torch.cat(masks).numpy()  # (N, L)
    raw = torch.cat(features)
    pooled = (raw * torch.cat(masks).unsqueeze(-1)).sum(1) / torch.cat(masks).sum(1, keepdim=True).clamp_min(1)
    sentence = torch.nn.functional.layer_norm(pooled, (pooled.shape[-1],)).numpy()[:, None, :]  # (N, 1, H)
    test = np.array([_held_out(s["subject"]) for s in studies])
    groups = {"both": sources["both"], "note-told": [*sources["note_only"], *sources["both"]], "image-only": sources["image_only"]}
    rows, payload = [], {"data_root": str(root), "studies": len(studies), "test_studies": int(test.sum()), "encode_s": encode_s, "targets": {}}
    for name, target, real in (("sentence (one unit per note)", sentence, np.ones((len(studies), 1), dtype=bool)), ("tokens (one unit per token)", tokens, mask)):
        trivial = _score(_position_mean(target, real, ~test), target, real, test)
        found = {"position mean": trivial}
        for group, findings in groups.items():
            x = _one_hot(studies, findings)
            found[f"oracle: {group}"] = _score(_ridge(x, target, real, ~test, args.ridge), target, real, test)
        payload["targets"][name] = found
        for key, value in found.items():
            rows.append([name, key, f"{value:.4f}", f"{(trivial - value) / trivial * 100:+.1f} %" if key != "position mean" else "-"])
    both = _one_hot(studies, groups["both"])
    recall, chance = _retrieval_ceiling(both[test], args.gallery)
    payload["retrieval"] = {"gallery": args.gallery, "oracle_r@1": recall, "chance_r@1": chance}
    lines = [
        "# Cross-modal ceiling of the medical demo: how much of a hidden note the image could tell",
        "",
        f"`python benchmarks/crossmodal_ceiling.py` on `{root}` ({len(studies)} studies, {int(test.sum())} held out by subject; "
        f"frozen MiniLM notes at {args.max_length} tokens, encoded in {encode_s:.0f} s). Loss: the pretraining objective's mean squared error per unit "
        "(layer-normed targets), over real units, on the held-out studies; lower is better.",
        "",
        table(["note target", "predictor", "held-out loss", "below the position mean"], rows),
        "",
        f"Retrieval ceiling: among {args.gallery} held-out studies, an oracle embedding each study by the true states of the `both` findings "
        f"retrieves its note at recall@1 **{recall:.3f}** (chance {chance:.3f}): most studies share their `both` states with many others.",
        "",
        "Reading: `oracle: both` is the best any image reader can do for the note (it knows the shared findings exactly). What is left "
        "between it and `oracle: note-told` is what only the note knows; `image-only` is the sanity check (about nothing).",
        "",
    ]
    write_results("crossmodal_ceiling", payload | {"machine": machine()}, "\n".join(lines))


def _studies(root: Path) -> list[dict]:
    """Each study's subject, context note (as the dataset feeds it) and finding states (labels.csv)."""
    from mmapps_domains.medical.notes import read_note_file, select_note

    with (root / "labels.csv").open() as handle:
        labels = {row["study_id"]: row for row in csv.DictReader(handle)}
    out = []
    with (root / "manifest.csv").open() as handle:
        for row in csv.DictReader(handle):
            if not row.get("note_path"):  # a study without a note: nothing to reconstruct
                continue
            text = select_note(read_note_file(Path(row["note_path"]), root), kind=row["note_kind"] or None).text
            cells = labels[row["study_id"]]
            states = {f: ("positive" if v == "1.0" else "uncertain" if v == "-1.0" else "negative") for f, v in cells.items() if f not in ("subject_id", "study_id")}
            out.append({"subject": row["subject_id"], "note": text, "states": states})
    return out


def _held_out(subject: str) -> bool:
    import hashlib

    return int(hashlib.sha256(subject.encode()).hexdigest(), 16) % 5 == 0


def _one_hot(studies: list[dict], findings: list[str]) -> np.ndarray:
    x = np.array([[float(s["states"][f] == state) for f in findings for state in STATES] for s in studies])
    return np.hstack([x, np.ones((len(studies), 1))])  # (N, 3F + 1), an intercept


def _position_mean(target: np.ndarray, real: np.ndarray, fit: np.ndarray) -> np.ndarray:
    w = real[fit].astype(float)[..., None]
    mean = (target[fit] * w).sum(0) / np.maximum(w.sum(0), 1e-9)  # (U, P)
    return np.broadcast_to(mean, target.shape)


def _ridge(x: np.ndarray, target: np.ndarray, real: np.ndarray, fit: np.ndarray, alpha: float) -> np.ndarray:
    """Per unit position, ridge of the target on `x` over the fitted studies whose unit is real."""
    prediction = np.empty_like(target)
    for u in range(target.shape[1]):
        rows = fit & real[:, u]
        if rows.sum() < x.shape[1]:
            prediction[:, u] = target[rows, u].mean(0) if rows.any() else 0.0
            continue
        a = x[rows]
        coef = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ target[rows, u])
        prediction[:, u] = x @ coef
    return prediction


def _score(prediction: np.ndarray, target: np.ndarray, real: np.ndarray, rows: np.ndarray) -> float:
    per_unit = ((prediction[rows] - target[rows]) ** 2).mean(-1)  # (n, U)
    w = real[rows].astype(float)
    return float((per_unit * w).sum() / w.sum())


def _retrieval_ceiling(states: np.ndarray, gallery: int, draws: int = 200) -> tuple[float, float]:
    """Expected recall@1 of an embedding that knows only `states` (ties broken at random), over random galleries."""
    rng = np.random.default_rng(0)
    recalls = []
    for _ in range(draws):
        pick = states[rng.choice(len(states), size=min(gallery, len(states)), replace=False)]
        _, inverse, counts = np.unique(pick, axis=0, return_inverse=True, return_counts=True)
        recalls.append(float(np.mean(1.0 / counts[inverse.ravel()])))
    return float(np.mean(recalls)), 1.0 / min(gallery, len(states))


if __name__ == "__main__":
    main()
