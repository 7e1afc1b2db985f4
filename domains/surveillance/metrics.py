"""Evaluation of the ``events`` task: frame-level AUC/AP, event detection AP, alarm metrics.

Frame level (UCF-Crime / XD-Violence conventions): each clip's window scores are expanded to its
native frame rate (frame i at time i / fps takes the score of the window containing it); the
anomaly score of a window is its max over classes; a frame is positive when it lies inside a
ground-truth segment. All test clips (normal ones included) are concatenated, then ROC AUC,
scikit-learn's ``average_precision_score`` (``frame/ap``) and ``auc(recall, precision)`` as in the
XD-Violence code (``frame/ap_xd``) are computed; bootstrap CIs resample whole clips.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from torch import Tensor

from mmapps_domains.surveillance.alarms import ClipScores, alarm_metrics, threshold_for_recall
from mmapps_domains.surveillance.events import TimedSegment, detection_ap, scores_to_segments

TIOUS = (0.1, 0.3, 0.5)


def postprocess(outputs: Tensor, batch: Any) -> list[dict]:
    """Logits (B, T, C) -> one prediction per clip: per-window sigmoid scores of its real windows."""
    scores = outputs.detach().float().sigmoid().cpu().numpy()
    out = []
    for b, meta in enumerate(batch.meta):
        n = len(meta["window_starts"])
        out.append({"scores": scores[b, :n].tolist(), "window_s": meta["window_s"], "window_starts": meta["window_starts"]})
    return out


def expand_to_frames(window_scores: np.ndarray, window_s: float, fps: float, duration: float) -> np.ndarray:
    """Per-window scores (W, ...) -> per-frame scores (N, ...), N = round(duration * fps)."""
    n = max(1, int(round(duration * fps)))
    index = np.minimum(np.floor(np.arange(n) / fps / window_s + 1e-9).astype(int), len(window_scores) - 1)
    return np.asarray(window_scores)[index]


def frame_labels(segments: Sequence[Sequence], fps: float, duration: float, label: str | None = None) -> np.ndarray:
    """0/1 per native frame: inside a segment (of ``label``, or of any class when None)."""
    t = np.arange(max(1, int(round(duration * fps)))) / fps
    y = np.zeros(t.size, np.int64)
    for start, end, name in segments:
        if label is None or name == label:
            y |= (t >= start) & (t < end)
    return y


def xd_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """AP as the XD-Violence code computes it: ``auc(recall, precision)`` of the PR curve."""
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    return float(auc(recall, precision))


def _labelled(records: Sequence[Any]) -> list[Any]:
    """Records whose frame labels are known (normal clips, or clips with segments)."""
    return [r for r in records if r.meta.get("segments") or not r.meta.get("clip_labels")]


def frame_auc_resampler(records: Sequence[Any], cfg: Any = None) -> Callable[[np.ndarray], float]:
    """``TaskSpec.bootstrap_metric``: ``frame/auc`` of a resample (row indices) of `records`.

    The frames of a window share its score, so each clip reduces once to per-window (score,
    positive frames, negative frames); a resample's AUC is the Mann-Whitney statistic over those
    weighted windows (ties count one half), equal to ``roc_auc_score`` on the expanded frames
    (`frame_metrics`) without expanding them. Unlabelled clips contribute nothing, as there.
    """
    per_clip: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    labelled = {id(r) for r in _labelled(records)}
    for r in records:
        if id(r) not in labelled:
            per_clip.append(None)
            continue
        m, scores = r.meta, np.asarray(r.prediction["scores"], np.float64).max(1)  # (W,)
        n = max(1, int(round(m["duration"] * m["fps"])))
        window = np.minimum(np.floor(np.arange(n) / m["fps"] / m["window_s"] + 1e-9).astype(int), len(scores) - 1)
        y = frame_labels(m["segments"], m["fps"], m["duration"])
        pos = np.bincount(window, weights=y, minlength=len(scores))
        per_clip.append((scores, pos, np.bincount(window, minlength=len(scores)) - pos))

    def metric(rows: np.ndarray) -> float:
        chosen = [per_clip[i] for i in rows if per_clip[i] is not None]
        if not chosen:
            return float("nan")
        s, pos, neg = (np.concatenate([c[k] for c in chosen]) for k in range(3))
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        unique, inverse = np.unique(s, return_inverse=True)
        pos_u, neg_u = np.bincount(inverse, weights=pos, minlength=unique.size), np.bincount(inverse, weights=neg, minlength=unique.size)
        below = np.cumsum(neg_u) - neg_u  # negatives with a strictly lower score
        return float(np.sum(pos_u * (below + 0.5 * neg_u)) / (n_pos * n_neg))

    return metric


def frame_metrics(records: Sequence[Any], classes: Sequence[str], resamples: int = 0, level: float = 0.95) -> dict[str, float]:
    """Frame-level AUC / AP / XD-AP of the anomaly score, per-class frame AP, bootstrap CIs by clip."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    ys, ss, groups, per_class = [], [], [], {c: ([], []) for c in classes}
    for i, r in enumerate(_labelled(records)):
        m, scores = r.meta, np.asarray(r.prediction["scores"], np.float64)  # (W, C)
        frames = expand_to_frames(scores, m["window_s"], m["fps"], m["duration"])  # (N, C)
        ys.append(frame_labels(m["segments"], m["fps"], m["duration"]))
        ss.append(frames.max(1))
        groups.append(np.full(frames.shape[0], i))
        for c_i, c in enumerate(classes):
            per_class[c][0].append(frame_labels(m["segments"], m["fps"], m["duration"], c))
            per_class[c][1].append(frames[:, c_i])
    if not ys:
        return {}
    y, s, g = np.concatenate(ys), np.concatenate(ss), np.concatenate(groups)
    out: dict[str, float] = {"frame/positive_rate": float(y.mean())}
    if 0 < y.sum() < y.size:
        out.update({"frame/auc": float(roc_auc_score(y, s)), "frame/ap": float(average_precision_score(y, s)), "frame/ap_xd": xd_average_precision(y, s)})
        if resamples:
            from mmapps.metrics.bootstrap import bootstrap_ci

            for key, fn in (("frame/auc", roc_auc_score), ("frame/ap", average_precision_score)):
                ci = bootstrap_ci(lambda a, b: float(fn(a, b)) if 0 < a.sum() < a.size else float("nan"), [y, s], groups=g, n_resamples=resamples, level=level)
                out[f"{key}/ci_low"], out[f"{key}/ci_high"] = float(ci.low), float(ci.high)
    for c, (yc, sc) in per_class.items():
        yc_all = np.concatenate(yc)
        if 0 < yc_all.sum() < yc_all.size:
            out[f"frame/ap/{c}"] = float(average_precision_score(yc_all, np.concatenate(sc)))
    return out


def event_ap_metrics(records: Sequence[Any], classes: Sequence[str], threshold: float = 0.5, merge_gap: int = 1) -> dict[str, float]:
    """Per-class detection AP at tIoU 0.1 / 0.3 / 0.5 and their mean over classes with events."""
    out: dict[str, float] = {}
    labelled = _labelled(records)
    for tiou_thr in TIOUS:
        aps = []
        for c_i, c in enumerate(classes):
            dets, gts = [], []
            for r in labelled:
                scores = np.asarray(r.prediction["scores"])[:, c_i]
                dets += scores_to_segments(r.sample_id, scores, r.meta["window_s"], threshold, merge_gap)
                gts += [TimedSegment(r.sample_id, s, e) for s, e, name in r.meta["segments"] if name == c]
            ap = detection_ap(dets, gts, tiou_thr)
            if not np.isnan(ap):
                out[f"event/ap@{tiou_thr}/{c}"] = ap
                aps.append(ap)
        if aps:
            out[f"event/map@{tiou_thr}"] = float(np.mean(aps))
    return out


def clip_scores(records: Sequence[Any]) -> list[ClipScores]:
    """Anomaly scores and events per labelled clip, for the alarm metrics."""
    return [
        ClipScores(r.sample_id, np.asarray(r.prediction["scores"]).max(1), r.meta["window_s"], r.meta["duration"],
                   [TimedSegment(r.sample_id, s, e) for s, e, _ in r.meta["segments"]])
        for r in _labelled(records)
    ]


def events_metrics(records: Sequence[Any], cfg: Any, val_records: Sequence[Any] | None = None) -> dict[str, float]:
    """All metrics of the ``events`` task (the domain's ``TaskSpec.metrics``).

    ``cfg.eval.options``: ``segment_threshold`` (0.5), ``merge_gap`` (1 window), ``target_recall``
    (0.9). The alarm threshold is the one reaching ``target_recall`` event recall on ``val_records``
    (else ``data.options.alert_threshold``).
    """
    options = dict(cfg.eval.options or {})
    classes = list((cfg.data.options or {}).get("classes") or records[0].meta["classes"]) if records else []
    seg_thr, gap = float(options.get("segment_threshold", 0.5)), int(options.get("merge_gap", 1))
    out = frame_metrics(records, classes, cfg.eval.bootstrap_resamples, cfg.eval.ci_level)
    out.update(event_ap_metrics(records, classes, seg_thr, gap))
    threshold = float("nan")
    if val_records:
        threshold = threshold_for_recall(clip_scores(val_records), float(options.get("target_recall", 0.9)))
    if np.isnan(threshold):
        threshold = float((cfg.data.options or {}).get("alert_threshold", 0.5))
    out.update(alarm_metrics(clip_scores(records), threshold, gap))
    return out
