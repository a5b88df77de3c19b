"""Every variant's state_dict (names and shapes, both forms) equals the official one, built on the meta device."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from models import create_model, get_model_config, list_models
from tests.conftest import SHARED_REFERENCE

VARIANTS = {name: name.removeprefix("unireplknet_") for name in list_models()}


@pytest.fixture(scope="module")
def official_shapes() -> dict[str, Any]:
    path = SHARED_REFERENCE / "unireplknet_state_dict_shapes.json"
    if not path.exists():
        pytest.skip(
            f"shared reference data not found at {path} "
            "(it sits beside the checkout in CI; set REFERENCE_DATA_DIR to a copy)"
        )
    return json.loads(path.read_text())


def test_registry_covers_all_official_variants(official_shapes: dict[str, Any]) -> None:
    assert sorted(VARIANTS.values()) == sorted(official_shapes)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("form", ["train", "deploy"])
def test_state_dict_keys_and_shapes(official_shapes: dict[str, Any], name: str, form: str) -> None:
    expected = official_shapes[VARIANTS[name]]
    with torch.device("meta"):
        model = create_model(name, deploy=form == "deploy")
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    theirs = expected[form]
    assert list(ours) == list(theirs)
    assert ours == theirs
    params = sum(p.numel() for p in model.parameters())
    assert params == expected[f"params_{form}"]
    cfg = get_model_config(name)
    assert list(cfg.dims) == expected["dims"] and list(cfg.depths) == expected["depths"]


@pytest.mark.parametrize("name", ["unireplknet_a", "unireplknet_t"])
def test_reparameterization_gives_the_deploy_tree(name: str) -> None:
    """Reparameterizing a real train-form model yields exactly the deploy form's keys and shapes."""
    with torch.device("meta"):
        deploy = create_model(name, deploy=True)
    model = create_model(name).eval().reparameterize()
    assert model.is_deploy
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in deploy.state_dict().items()}
