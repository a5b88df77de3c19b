"""The variant registry: names, configs, constructor arguments and errors."""

from __future__ import annotations

import pytest
import torch

from models import ModelError, UnknownModelError, create_model, get_model_config, list_models

EXPECTED_DIMS = {
    "a": (40, 80, 160, 320),
    "f": (48, 96, 192, 384),
    "p": (64, 128, 256, 512),
    "n": (80, 160, 320, 640),
    "t": (80, 160, 320, 640),
    "s": (96, 192, 384, 768),
    "b": (128, 256, 512, 1024),
    "l": (192, 384, 768, 1536),
    "xl": (256, 512, 1024, 2048),
}


def test_list_models_in_size_order() -> None:
    assert list_models() == [f"unireplknet_{v}" for v in EXPECTED_DIMS]


@pytest.mark.parametrize("name", list_models())
def test_config_carries_the_input_contract(name: str) -> None:
    cfg = get_model_config(name)
    assert cfg.dims == EXPECTED_DIMS[name.removeprefix("unireplknet_")]
    assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
    assert cfg.crop_pct == 0.875 and cfg.interpolation == "bicubic"
    spec = cfg.weights_spec()
    assert spec is not None and spec.filename.startswith(name + "_") and spec.filename.endswith(".pth")
    assert cfg.input_size == (3, spec.input_size, spec.input_size)
    assert [len(stage) for stage in cfg.kernel_sizes] == list(cfg.depths)


def test_released_weight_variants_adjust_the_config() -> None:
    s22k = get_model_config("unireplknet_s").with_weights("in22k")
    assert s22k.num_classes == 21841 and s22k.label_set is None
    assert get_model_config("unireplknet_s").with_weights("in22k_to_in1k").input_size == (3, 384, 384)
    assert get_model_config("unireplknet_l").with_weights("in22k").input_size == (3, 192, 192)


def test_kernel_layouts_follow_the_official_interleaving() -> None:
    assert get_model_config("unireplknet_t").kernel_sizes[2][:4] == (13, 3, 13, 3)
    assert get_model_config("unireplknet_s").kernel_sizes[2][:6] == (13, 3, 3, 13, 3, 3)
    assert get_model_config("unireplknet_a").kernel_sizes[0] == (3, 3)


def test_create_model_arguments() -> None:
    model = create_model("unireplknet_a", in_chans=1, num_classes=35, deploy=True)
    assert model.is_deploy and model.in_chans == 1 and model.num_classes == 35
    custom = ((3, 3), (7, 7), (9, 0, 11, 13, 15, 17), (5, 3))
    model = create_model("unireplknet_a", kernel_sizes=custom)
    assert model.kernel_sizes == custom
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 33, 47)).shape == (1, 1000)
    features = model.forward_features(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, 320)
    stages = model.forward_stages(torch.randn(1, 3, 64, 96))
    assert [tuple(s.shape[1:]) for s in stages] == [(40, 16, 24), (80, 8, 12), (160, 4, 6), (320, 2, 3)]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kernel_sizes": ((3, 3), (13,), (13,) * 6, (13, 13))}, ModelError, "do not match depths"),
        ({"kernel_sizes": ((3, 4), (13, 13), (13,) * 6, (13, 13))}, ModelError, "got 4"),
        ({"kernel_sizes": ((3, 3), (19, 13), (13,) * 6, (13, 13))}, ModelError, "got 19"),
    ],
)
def test_bad_arguments_raise_model_errors(kwargs: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        create_model("unireplknet_a", **kwargs)  # type: ignore[arg-type]


def test_unknown_names() -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'unireplknet_h'.*unireplknet_a"):
        create_model("unireplknet_h")
    with pytest.raises(UnknownModelError, match="no released weights tagged 'in22k'"):
        get_model_config("unireplknet_a").weights_spec("in22k")
    from models import UniRepLKNet

    with pytest.raises(ModelError, match="no default kernel layout"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
