"""Parts shipped without a domain: entry points (mmapps.encoders/fusions/heads), `mmapps parts`, option checks."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import torch

PART_MODULE = '''
"""A third-party encoder package: no domain, one encoder."""
import torch
from torch import nn

from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput


class SpikeEncoder(nn.Module):
    """Spike trains -> one token."""

    def __init__(self, dim: int, in_features: int, gain: float = 1.0) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, dim)
        self.gain = gain
        self.out_dim = dim

    def forward(self, mb):
        tokens = self.proj(mb.data.float() * self.gain).unsqueeze(1)
        mask = mb.present.unsqueeze(1)
        return EncoderOutput(tokens, mask, masked_mean(tokens, mask))
'''


def _distribution(site: Path, name: str, entry_points: str, module: str | None = None, source: str = "") -> None:
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module:
        (site / f"{module}.py").write_text(source)
        (info / "RECORD").write_text(f"{module}.py,,\n")


@pytest.fixture
def parts_site(tmp_path, monkeypatch):
    """A site folder with one working parts package and one broken, and fresh registries scanning it."""
    from mmapps import registry
    from mmapps.models.build import register_core_parts

    register_core_parts()
    _distribution(tmp_path, "spike-parts", "[mmapps.encoders]\nspike_linear = spike_parts_mod:SpikeEncoder\n", "spike_parts_mod", PART_MODULE)
    _distribution(tmp_path, "broken-parts", "[mmapps.heads]\nbroken_head = broken_parts_missing:Head\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    registry._distributions.cache_clear()
    for reg in (registry.ENCODERS, registry.FUSIONS, registry.HEADS):  # rescan with the new site, then forget it
        monkeypatch.setattr(reg, "_scanned", False)
        monkeypatch.setattr(reg, "_declared", {})
        monkeypatch.setattr(reg, "_errors", {})
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
    yield tmp_path
    registry._distributions.cache_clear()


def test_entry_point_encoder_is_listed_lazily_built_and_broken_ones_are_isolated(parts_site):
    import sys

    from mmapps.errors import DomainLoadError
    from mmapps.registry import ENCODERS, HEADS

    assert "spike_linear" in ENCODERS.list() and "spike_parts_mod" not in sys.modules, "listing imports nothing"
    encoder = ENCODERS.get("spike_linear")(dim=4, in_features=3)
    assert encoder.out_dim == 4 and "spike_parts_mod" in sys.modules
    info = {p.name: p for p in ENCODERS.info()}
    assert info["spike_linear"].source == "spike-parts" and info["spike_linear"].target == "spike_parts_mod:SpikeEncoder"
    assert info["image_cnn"].source == "core" and info["image_cnn"].loaded
    with pytest.raises(DomainLoadError, match=r"head 'broken_head' \(mmapps.heads entry point broken_parts_missing:Head of broken-parts\) failed to import: ModuleNotFoundError"):
        HEADS.get("broken_head")
    assert HEADS.get("multilabel") is not None, "the other heads still work"


def test_mmapps_parts_lists_core_domain_and_plugin_parts(parts_site):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    result = CliRunner().invoke(build_app(), ["parts"])
    assert result.exit_code == 0, result.output
    lines = {tuple(line.split()[:2]): line for line in result.output.splitlines() if line[:1] in "efhb" and not line.startswith("broken")}
    assert "core" in lines[("encoder", "signal_resnet1d")] and "mmapps.models.encoders.signal:SignalResNet1dEncoder" in lines[("encoder", "signal_resnet1d")]
    assert "spike-parts" in lines[("encoder", "spike_linear")]
    assert "domain surveillance" in lines[("encoder", "window_logmel_cnn")], "parts a domain registers in its setup hook"
    assert ("fusion", "attention") in lines and ("head", "timestep") in lines
    assert "BROKEN" in lines[("head", "broken_head")] and "broken: head broken_head" in result.output and "ModuleNotFoundError" in result.output
    only = CliRunner().invoke(build_app(), ["parts", "signal*", "--kind", "encoder"])
    assert only.exit_code == 0 and only.output.split()[:2] == ["encoder", "signal_resnet1d"] and "fusion" not in only.output
    detailed = CliRunner().invoke(build_app(), ["parts", "spike*", "--options"])
    assert detailed.exit_code == 0 and "options: in_features, gain=1.0" in detailed.output, detailed.output
    bad = CliRunner().invoke(build_app(), ["parts", "--kind", "encoders"])
    assert bad.exit_code == 2 and "expected encoder, fusion or head" in bad.output


def _cfg(encoder_options: dict, head: dict | None = None):
    from mmapps.config import validate_config

    model = {"dim": 8, "encoders": {"x": {"name": "signal_resnet1d", "options": encoder_options}}, "fusion": {"name": "concat"}}
    if head:
        model["heads"] = {"y": head}
    return validate_config({"domain": "toy", "model": model})


def _domain():
    from mmapps.domain import Domain, ModalitySpec, TaskSpec

    task = TaskSpec("y", "multilabel", ("a", "b"), {}, "mmapps.tasks.postprocess:sigmoid_scores", "mmapps.tasks.metrics:multilabel_metrics", "auroc/macro")
    return Domain("toy", "toy", (ModalitySpec("x", "signal", "npy"),), (task,), "x:y", "x:y", {"default": {}, "smoke": {}})


def test_misspelt_part_options_get_did_you_mean_and_the_accepted_list():
    from mmapps.errors import ConfigError
    from mmapps.models.build import build_fusion_model, register_core_parts

    register_core_parts()
    with pytest.raises(ConfigError, match=r"model.encoders.x.options: SignalResNet1dEncoder has no option 'widht' \(did you mean width\?\)\. Its options: in_channels, width=32, stride=16"):
        build_fusion_model(_cfg({"in_channels": 2, "widht": 8}), _domain())
    with pytest.raises(ConfigError, match=r"model.encoders.x.options: SignalResNet1dEncoder needs 'in_channels'"):
        build_fusion_model(_cfg({"width": 8}), _domain())
    with pytest.raises(ConfigError, match=r"model.heads.y.options: MultiLabelHead has no option 'dropuot' \(did you mean dropout\?\)"):
        build_fusion_model(_cfg({"in_channels": 2}, {"options": {"dropuot": 0.2}}), _domain())
    model = build_fusion_model(_cfg({"in_channels": 2, "width": 8, "stride": 4}), _domain())
    from mmapps.data import Sample, collate_samples

    batch = collate_samples([Sample("a", "g", {"x": torch.randn(32, 2)}), Sample("b", "g", {"x": torch.randn(32, 2)})], {"x": "fixed"})
    assert model(batch)["y"].shape == (2, 2)


def test_register_parts_hook_registers_by_plain_call():
    from torch import nn

    from mmapps.registry import Registry

    reg = Registry("encoder")

    def register_parts() -> None:  # what a package's explicit hook looks like
        reg.register("mine", nn.Identity)

    register_parts()
    register_parts()  # idempotent: the same object again is no duplicate
    assert reg.get("mine") is nn.Identity and reg.info()[0].source == "torch"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("mine", nn.Linear)
