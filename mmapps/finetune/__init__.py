"""Parameter-efficient fine-tuning: per-part modes (full, frozen, last-N, LoRA, IA3), adapters I/O, parameter counts.

``finetune.parts.<modality or fusion>.mode`` in the run config chooses the mode; the trainer calls
`apply_finetune` once, builds its optimiser over the trainable parameters only, and writes merged
(normal) checkpoints plus, with adapters, an adapters-only file. See docs/pretraining.md.
"""

from mmapps.finetune.adapter_io import adapter_state_dict, load_adapters, save_adapters
from mmapps.finetune.adapters import has_adapters, merged_copy, unload_adapters
from mmapps.finetune.modes import (
    FinetunePlan,
    apply_finetune,
    lock_eval,
    lock_norm_statistics,
)
from mmapps.finetune.parts import ModelParts, find_parts, layer_units
from mmapps.finetune.summary import (
    ParameterCount,
    count_parameters,
    format_summary,
    parameter_info,
    parameter_summary,
)

__all__ = [
    "FinetunePlan", "ModelParts", "ParameterCount", "adapter_state_dict", "apply_finetune", "count_parameters", "find_parts",
    "format_summary", "has_adapters", "layer_units", "load_adapters", "lock_eval", "lock_norm_statistics", "merged_copy",
    "parameter_info", "parameter_summary", "save_adapters", "unload_adapters",
]
