"""The bridge from `export_checkpoint` to the quantiser (``mmapps.export.quantize``).

Contract expected of ``mmapps.export.quantize.quantize_export(folder, sidecar, loaded, method,
calibration_samples, log) -> dict``: write the quantised graph into `folder` (e.g.
``model.int8.onnx``, listed by the returned dict's ``model_file``), with ``method`` ``dynamic`` or
``static`` (static calibrates with `calibration_method` on `calibration_samples` training samples of ``loaded.splits.train``
through ``loaded.loader("train")`` and ``resolve(sidecar.runtime)``'s ``feeds``), and return a
JSON-able report (ops in int8 / fp32, share of MACs in int8, the quantised metric) stored in the
sidecar under ``quantized``. Every file it writes is hashed into the sidecar afterwards.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmapps.errors import ConfigError


def quantize_export(folder: Path, sidecar: Any, loaded: Any, method: str, calibration_samples: int, log: Callable[[str], None], calibration_method: str = "minmax", max_drop: float | None = None) -> dict[str, Any]:
    try:
        module = importlib.import_module("mmapps.export.quantize")
    except ModuleNotFoundError as err:
        if err.name != "mmapps.export.quantize":
            raise
        raise ConfigError(f"--quantize {method}: quantisation is not available in this mmapps install (no mmapps.export.quantize); export with --quantize none") from None
    return module.quantize_export(folder, sidecar, loaded, method, calibration_samples, log, calibration_method, max_drop)
