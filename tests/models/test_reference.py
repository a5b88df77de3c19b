"""Our network is the official one: logits match the official implementation's, in both forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import models
from models import UniRepLKNet
from tests.conftest import SHARED_REFERENCE, TEST_DATA

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_ref() -> dict[str, Any]:
    return torch.load(TEST_DATA / "unireplknet_tiny_custom_ref.pt", weights_only=False)


def _tiny_model(ref: dict[str, Any], deploy: bool = False) -> UniRepLKNet:
    return UniRepLKNet(**ref["config"], deploy=deploy).eval()


def _max_diff(model: torch.nn.Module, inputs: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    with torch.inference_mode():
        return max((model(x) - y).abs().max().item() for x, y in zip(inputs, expected, strict=True))


def test_tiny_train_form_matches_official(tiny_ref: dict[str, Any]) -> None:
    model = _tiny_model(tiny_ref)
    model.load_state_dict(tiny_ref["state_dict_train_form"], strict=True)
    assert _max_diff(model, tiny_ref["inputs"], tiny_ref["logits_train_form"]) < TOL


@pytest.mark.parametrize("fast", [True, False], ids=["fast-forward", "official-forward"])
def test_tiny_reparameterized_matches_official_deploy(tiny_ref: dict[str, Any], fast: bool) -> None:
    model = _tiny_model(tiny_ref)
    model.load_state_dict(tiny_ref["state_dict_train_form"], strict=True)
    model.reparameterize()
    model.set_fast_forward(fast)
    assert model.is_deploy
    assert _max_diff(model, tiny_ref["inputs"], tiny_ref["logits_deploy_form"]) < TOL
    ours, official = model.state_dict(), tiny_ref["state_dict_deploy_form"]
    assert list(ours) == list(official)
    for key, value in official.items():
        assert torch.allclose(ours[key], value, atol=1e-6), key


def test_tiny_official_deploy_state_dict_loads_strictly(tiny_ref: dict[str, Any]) -> None:
    model = _tiny_model(tiny_ref, deploy=True)
    model.load_state_dict(tiny_ref["state_dict_deploy_form"], strict=True)
    assert _max_diff(model, tiny_ref["inputs"], tiny_ref["logits_deploy_form"]) < TOL
    channels_last = [x.contiguous(memory_format=torch.channels_last) for x in tiny_ref["inputs"]]
    assert _max_diff(model, channels_last, tiny_ref["logits_deploy_form"]) < TOL


def _shared(name: str) -> Path:
    path = SHARED_REFERENCE / name
    if not path.exists():
        pytest.skip(
            f"shared reference data not found at {path} "
            "(it sits beside the checkout in CI; set REFERENCE_DATA_DIR to a copy)"
        )
    return path


@pytest.fixture(scope="module")
def a_io() -> dict[str, Any]:
    return torch.load(_shared("unireplknet_a_ref_io.pt"), weights_only=False)


def test_a_train_form_matches_official(a_io: dict[str, Any]) -> None:
    model, info = models.load_model("unireplknet_a", _shared("unireplknet_a_ref_train.pth"), deploy=False)
    assert info.form == "train" and not model.is_deploy
    assert _max_diff(model, a_io["inputs"], a_io["logits_train_form"]) < TOL


def test_a_reparameterized_matches_official_deploy(a_io: dict[str, Any]) -> None:
    model, info = models.load_model("unireplknet_a", _shared("unireplknet_a_ref_train.pth"))
    assert info.form == "train" and model.is_deploy
    assert _max_diff(model, a_io["inputs"], a_io["logits_deploy_form"]) < TOL


def test_a_official_deploy_file_loads_and_matches(a_io: dict[str, Any]) -> None:
    model, info = models.load_model("unireplknet_a", _shared("unireplknet_a_ref_deploy.pth"))
    assert info.form == "deploy"
    assert _max_diff(model, a_io["inputs"], a_io["logits_deploy_form"]) < TOL
    official = torch.load(_shared("unireplknet_a_ref_deploy.pth"), weights_only=True)
    reparameterized, _ = models.load_model("unireplknet_a", _shared("unireplknet_a_ref_train.pth"))
    ours = reparameterized.state_dict()
    assert list(ours) == list(official)
    for key, value in official.items():
        assert torch.allclose(ours[key], value, atol=1e-5), key
