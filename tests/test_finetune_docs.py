"""docs/pretraining.md's fine-tuning sections cannot rot: every mode is in the table, its command resolves, the study presets are the code's."""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path

from mmapps.config import PartFinetuneConfig

DOC = (Path(__file__).resolve().parents[1] / "docs" / "pretraining.md").read_text()


def _section(title: str) -> str:
    return DOC.split(f"\n## {title}\n")[1].split("\n## ")[0]


def test_modes_table_lists_every_mode():
    table = _section("Fine-tuning modes (`finetune.parts`)")
    documented = set(re.findall(r"^\| `(\w+)`", table, flags=re.MULTILINE))
    assert documented == set(typing.get_args(PartFinetuneConfig.model_fields["mode"].annotation))


def test_modes_command_resolves():
    from mmapps.plugins import get_domain
    from mmapps.workflows.resolve import resolve_config

    block = re.findall(r"```bash\n(.*?)```", _section("Fine-tuning modes (`finetune.parts`)"), flags=re.DOTALL)[0]
    argv = shlex.split(block.replace("\\\n", " "))
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = resolve_config(get_domain(argv[1]), argv[argv.index("--recipe") + 1], None, sets)
    assert cfg.finetune.parts["image"].mode == "lora" and cfg.finetune.parts["image"].rank == 4
    assert cfg.finetune.parts["note"].mode == "frozen" and cfg.finetune.parts["fusion"].mode == "lora"


def test_study_section_states_the_presets():
    from mmapps.workflows.label_efficiency import PRESETS

    text = _section("The label-efficiency study")
    assert "budgets 25, 50, 100, 250, all" in text and PRESETS["full"].budgets == (25, 50, 100, 250, None)
    assert "LR grid 3e-4, 1e-3, 3e-3, 1e-2" in text and PRESETS["full"].lrs == (3e-4, 1e-3, 3e-3, 1e-2)
    tuned = PRESETS["tuned"]
    assert "up to 1200 optimiser steps" in text and tuned.validated_steps.max_steps == 1200 and tuned.validated_steps.every == 50
    assert "LR grid 1e-3, 3e-3, 1e-2 searched on seed 0" in text and tuned.lrs == (1e-3, 3e-3, 1e-2) and tuned.budgets == (25, 100, None)
    assert "budgets {25, all} x 2 arms x 3 seeds" in text and PRESETS["quick"].budgets == (25, None) and PRESETS["quick"].seeds == 3
