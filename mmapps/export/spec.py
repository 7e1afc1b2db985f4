"""What an exported graph takes and returns: named tensors with dtypes and symbolic axes.

A `TensorSpec` is one graph input or output. Its ``shape`` holds an int for a fixed axis and a
string for a symbolic (dynamic) axis: ``"batch"`` for the batch axis shared by every input and
output, ``"<modality>_elements"`` for images per study or windows, ``"<modality>_tokens"`` for
text length. ``modality`` and ``role`` say where the value comes from in an mmapps `Batch`
(the pre-processing boundary), so `mmapps.export.feeds` can build the inputs without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Role = Literal["data", "mask", "present", "input_ids", "attention_mask", "offsets", "state", "meta", "output"]
DTYPES = ("float32", "float16", "int64", "int32", "bool", "uint8")
BATCH_AXIS = "batch"


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output.

    Args:
        name: the ONNX value name.
        dtype: a numpy dtype name from `DTYPES`.
        shape: per axis an int (fixed) or a symbol (dynamic; ``"batch"`` is the batch axis).
        modality: the modality it carries (inputs), or None.
        role: ``data`` (the modality's tensor), ``mask`` (element mask of a padded modality),
            ``present`` (bool (B,), False where the sample lacks the modality), ``input_ids`` /
            ``attention_mask`` (tokenised text), ``offsets`` (packed rows), ``state`` / ``meta``
            (domain inputs such as streaming state or calibration), ``output``.
        task: the task it answers (outputs), or None.
        description: one line for the sidecar and the docs.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    modality: str | None = None
    role: Role = "data"
    task: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name!r}: dtype {self.dtype!r}; expected one of {DTYPES}")

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def batched(self) -> bool:
        return bool(self.shape) and self.shape[0] == BATCH_AXIS

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if k == "shape" else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TensorSpec:
        return cls(**{**values, "shape": tuple(values["shape"])})


def zeros_for(spec: TensorSpec, batch_size: int, axis_sizes: dict[str, int] | None = None) -> np.ndarray:
    """Full-shape zeros for an absent input (symbolic axes: `axis_sizes`, else 1; never a size-0 axis)."""
    sizes = axis_sizes or {}
    shape = [batch_size if a == BATCH_AXIS else (a if isinstance(a, int) else sizes.get(a, 1)) for a in spec.shape]
    return np.zeros(shape, dtype=spec.np_dtype)
