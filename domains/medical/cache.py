"""Medical preprocessing through the core cache (`mmapps.data.cache`): one entry per DICOM file.

The entry holds the preprocessed ``(1, S, S)`` float32 image and the reader's non-identifying
metadata (view, sex, age band inputs, spacing...). ``validate_images`` decodes every image while
indexing; through this loader that decode fills the cache, so epoch 1 reads it instead of decoding
again, and a later run with the same files and options decodes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# The entry layout; the code that computes entries is keyed by `code_digest`, so any edit to it misses.
PREPROCESS_VERSION = 1
_PACKAGE = Path(__file__).resolve().parent


def _preprocess_modules() -> list[str]:
    """The modules whose code makes an entry: the reader (every ``dicom*`` module) and the preprocessing."""
    names = sorted(p.stem for p in _PACKAGE.glob("dicom*.py") if p.stem != "dicom_write") + ["preprocess", "transforms", "cache"]
    return [f"mmapps_domains.medical.{n}" for n in names if (_PACKAGE / f"{n}.py").is_file()]


class CachedPreprocess:
    """``path -> (array (1, S, S), metadata)``: the preprocessing behind the domain's cache namespace.

    Args:
        preprocess: the deterministic ``path -> (array, metadata)`` (`transforms.build_preprocess`).
        cache: the domain's `SampleCache`, or None to compute every time.
    """

    def __init__(self, preprocess: Callable[[Path], tuple[np.ndarray, dict]], cache: Any | None) -> None:
        self.preprocess = preprocess
        self.cache = cache

    def __call__(self, path: Path) -> tuple[np.ndarray, dict]:
        if self.cache is None:
            return self.preprocess(path)

        def compute() -> tuple[dict[str, np.ndarray], dict]:
            array, meta = self.preprocess(path)
            return {"image": array}, meta

        found = self.cache.get_or_compute([path], compute)
        return found.arrays["image"], found.meta

    def describe(self) -> str:
        return self.cache.describe() if self.cache is not None else "off (cache.enabled=false)"


def build_cached_preprocess(cfg: Any, options: Any) -> CachedPreprocess:
    """The medical loader for a run: `transforms.build_preprocess` through the cache that ``cfg.cache`` configures."""
    from mmapps_domains.medical.transforms import build_preprocess, preprocess_config

    from mmapps.data.cache import code_digest, open_cache

    config = {**preprocess_config(options), "version": PREPROCESS_VERSION, "code": code_digest(*_preprocess_modules())}
    cache = open_cache(cfg, "medical", config)
    return CachedPreprocess(build_preprocess(options), cache)
