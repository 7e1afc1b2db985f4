"""docs/pretraining.md cannot rot: its options table is PretrainConfig, its commands resolve, its masking table is the core's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from mmapps.config import PretrainConfig

DOC = (Path(__file__).resolve().parents[1] / "docs" / "pretraining.md").read_text()


def _section(title: str) -> str:
    return DOC.split(f"\n## {title}\n")[1].split("\n## ")[0]


def test_options_table_lists_every_pretrain_field():
    documented = set()
    for cell in re.findall(r"^\| `([^|]+?)` \|", _section("Options"), flags=re.M):
        for name in re.split(r"`, `", cell):
            documented.add(name.split(".")[0])
    assert documented == set(PretrainConfig.model_fields)


def test_masking_table_names_every_core_objective_encoder():
    from mmapps.pretrain.kinds import CORE_ENCODERS

    table = _section("Masking per encoder kind")
    for name in CORE_ENCODERS.split(", "):
        assert f"`{name}`" in table, name


def test_intro_commands_resolve():
    from mmapps.plugins import get_domain
    from mmapps.pretrain.recipes import resolve_pretrain_config

    block = re.findall(r"```bash\n(.*?)```", DOC.split("\n## ")[0], flags=re.S)[0]
    for line in block.splitlines():
        argv = shlex.split(line.split("#")[0])
        if argv[2] != "pretrain":
            continue
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        cfg = resolve_pretrain_config(get_domain(argv[1]), argv[argv.index("--recipe") + 1] if "--recipe" in argv else None, None, sets)
        for text in sets:
            key, value = text.split("=")
            node = cfg
            for part in key.split(".")[:-1]:
                node = getattr(node, part) if not isinstance(node, dict) else node[part]
            assert str(node[key.split(".")[-1]] if isinstance(node, dict) else getattr(node, key.split(".")[-1])) == value
