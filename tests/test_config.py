import pytest

from mmapps.config import deep_merge, parse_override, validate_config
from mmapps.errors import ConfigError


def test_override_parsing_uses_yaml_values():
    assert parse_override("train.lr=3e-4") == {"train": {"lr": 3e-4}}
    assert parse_override("model.modalities=[image]") == {"model": {"modalities": ["image"]}}
    assert parse_override("data.root=") == {"data": {"root": None}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_deep_merge_keeps_siblings():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_invalid_value_names_field_value_and_rule():
    with pytest.raises(ConfigError) as err:
        validate_config({"domain": "x", "train": {"epochs": 0, "precision": "fp8"}})
    text = str(err.value)
    assert "train.epochs" in text and "greater than or equal to 1" in text and "found 0" in text
    assert "train.precision" in text and "'fp8'" in text and "'bf16'" in text


def test_unknown_field_is_rejected():
    with pytest.raises(ConfigError, match="train.learning_rate"):
        validate_config({"domain": "x", "train": {"learning_rate": 1.0}})


def test_recipe_yaml_and_overrides_layer_in_order(shapes_domain, tmp_path):
    from mmapps.workflows.resolve import resolve_config

    file = tmp_path / "cfg.yaml"
    file.write_text("recipe: smoke\ntrain:\n  epochs: 5\n  lr: 0.01\n")
    cfg = resolve_config(shapes_domain, None, file, ["train.lr=0.5"])
    assert cfg.recipe == "smoke" and cfg.train.epochs == 5 and cfg.train.lr == 0.5
    assert cfg.data.demo_n == 80  # from the smoke recipe
    with pytest.raises(ConfigError, match="unknown recipe 'huge'.*default, quick, smoke"):
        resolve_config(shapes_domain, "huge")
