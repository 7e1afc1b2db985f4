import pytest

from mmapps.errors import ConfigError
from mmapps.registry import Registry


def test_register_get_list_and_duplicates():
    reg = Registry("thing")

    @reg.register("alpha_net")
    class Alpha: ...

    @reg.register("beta_net")
    class Beta: ...

    assert reg.get("alpha_net") is Alpha
    assert reg.list("*_net") == ["alpha_net", "beta_net"]
    assert reg.list("a*") == ["alpha_net"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha_net")(Beta)


def test_unknown_name_suggests_close_matches():
    reg = Registry("encoder")
    reg.register("image_cnn")(object)
    with pytest.raises(ConfigError, match="did you mean image_cnn"):
        reg.get("image_cn")


def test_core_registries_hold_the_issue_minimum():
    from mmapps.models.build import register_core_parts
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    assert {"image_cnn", "text_transformer", "audio_cnn", "video_cnn", "pointnet", "tabular_mlp"} <= set(ENCODERS)
    assert {"concat", "late", "attention", "gated", "lmf"} <= set(FUSIONS)
    assert {"multiclass", "multilabel", "regression", "timestep"} <= set(HEADS)
