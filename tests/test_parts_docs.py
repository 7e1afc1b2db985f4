"""docs/parts.md cannot rot: its examples run, its table names every task function, its `mmapps parts` output is real."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "parts.md"


def test_parts_page_python_examples_run_and_the_example_encoder_keeps_the_contract():
    from mmapps.registry import ENCODERS

    namespace: dict = {}
    try:
        for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
            exec(compile(code, str(DOC), "exec"), namespace)
        encoder = ENCODERS.get("channel_stats")(dim=4, in_channels=2, window=10)
        from mmapps.data import Sample, collate_samples

        samples = [Sample("a", "g", {"x": namespace["torch"].randn(50, 2)}), Sample("b", "g", {"x": namespace["torch"].randn(30, 2)})]
        out = encoder(collate_samples(samples, {"x": "padded"}).inputs["x"])
        assert out.token_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2], "tokens made of padding are masked"
    finally:
        ENCODERS._entries.pop("channel_stats", None)  # keep the core registry as the sweep tests expect it


def test_task_function_table_names_every_public_task_function():
    import mmapps.tasks.losses as losses
    import mmapps.tasks.metrics as metrics
    import mmapps.tasks.postprocess as postprocess

    text = DOC.read_text()
    table = text[text.index("## Ready-made task functions") : text.index("## The encoder contract")]
    for module in (losses, postprocess, metrics):
        public = [n for n, obj in vars(module).items() if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "").startswith("mmapps.tasks")]
        public = [n for n in public if n != "check_finite_predictions"]
        for name in public:
            assert f"{module.__name__}:{name}" in table or f"`{name}`" in table, f"docs/parts.md: the task-function table does not name {module.__name__}:{name}"


def test_documented_parts_listing_is_what_the_cli_prints():
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    documented = re.search(r"\$ mmapps parts 'signal\*'\n(.*?)\n", DOC.read_text()).group(1)
    result = CliRunner().invoke(build_app(), ["parts", "signal*"])
    assert result.exit_code == 0 and result.output.splitlines()[0] == documented
