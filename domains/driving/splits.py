"""Train/val/test frame lists: ``ImageSets/*.txt`` (OpenPCDet / MMDetection3D layout) or a seeded split."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_split_file(path: str | Path) -> list[str]:
    """Read one frame id per line (blank lines ignored).

    Raises:
        ValueError: a line that is not a single token.
    """
    path = Path(path)
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        token = line.strip()
        if not token:
            continue
        if len(token.split()) != 1:
            raise ValueError(f"{path}:{number}: expected one frame id per line; found {token[:60]!r}")
        ids.append(token)
    return ids


def write_split_file(path: str | Path, ids: list[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def seeded_split(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Split frame ids at random (seeded) into train / val / test by `fractions` (sum 1).

    Returns:
        split name -> sorted ids; every split gets at least one id when there are 3 or more.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1; found {fractions}")
    order = np.random.default_rng(seed).permutation(len(ids))
    n = len(ids)
    n_val = max(1, int(round(fractions[1] * n))) if n >= 3 else 0
    n_test = max(1, int(round(fractions[2] * n))) if n >= 3 else 0
    n_train = n - n_val - n_test
    shuffled = [ids[i] for i in order]
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train:n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val:]),
    }


def read_image_sets(root: Path) -> dict[str, list[str]] | None:
    """``ImageSets`` lists of `root` ({"train", "val"[, "test"]}: ids), or None without train.txt and val.txt."""
    sets = Path(root) / "ImageSets"
    if not ((sets / "train.txt").is_file() and (sets / "val.txt").is_file()):
        return None
    lists = {name: read_split_file(sets / f"{name}.txt") for name in ("train", "val")}
    if (sets / "test.txt").is_file():
        lists["test"] = read_split_file(sets / "test.txt")
    return lists


def labelled_test_list(lists: dict[str, list[str]]) -> bool:
    """Whether ImageSets/test.txt names a labelled test split of training/.

    OpenPCDet's and MMDetection3D's test.txt lists KITTI's testing/ frames, whose ids (000000 ..)
    overlap those of training/: such a list is never a test split of training/.
    """
    test = set(lists.get("test", ()))
    return bool(test) and not (test & (set(lists["train"]) | set(lists["val"])))


def resolve_splits(root: Path, ids: list[str], fractions: tuple[float, float, float], seed: int) -> tuple[dict[str, list[str]], str]:
    """Frame lists for train/val/test and a sentence saying where they came from.

    With ``ImageSets/train.txt`` and ``val.txt``: those lists (restricted to the usable `ids`);
    ``test.txt`` when it names frames disjoint from train and val (`labelled_test_list`), else
    the val list doubles as the test split (as OpenPCDet reports on val). Without them: a seeded
    split of `ids`.
    """
    lists = read_image_sets(root)
    if lists is not None:
        known = set(ids)
        out = {name: [i for i in lists[name] if i in known] for name in ("train", "val")}
        own_test = labelled_test_list(lists)
        out["test"] = [i for i in lists["test"] if i in known] if own_test else list(out["val"])
        sets = Path(root) / "ImageSets"
        note = "" if own_test else (" (val doubles as test; test.txt names testing/ frames)" if "test" in lists else " (val doubles as test)")
        return out, f"ImageSets lists in {sets}{note}"
    return seeded_split(ids, fractions, seed), f"seeded split (seed {seed}) of {len(ids)} frames"
