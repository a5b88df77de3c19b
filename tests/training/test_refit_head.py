"""``--head train+ridge``: the network trained, then its head solved anew in closed form on the trained features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV

from modality_adapters import get_adapter
from servable.build import build_served_model
from service.commands.train import HEADS as CLI_HEADS
from service.settings import ModalitySettings
from tests.training.helpers import small_config
from tests.training.test_ridge_head import SMALL, periodic_series
from training import evaluate, train
from training.config import HEADS
from training.modeling import build_model
from training.ridge_head import ALPHAS, pooled_features


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("refit")
    data, test = periodic_series(root / "train", 8, 0), periodic_series(root / "test", 6, 1)
    params = {**SMALL, "representation": "values+gasf+gadf+rp"}
    cfg = small_config(
        "timeseries", data, root / "out", root / "cache", params=params, head="train+ridge", seed=3, epochs=2, val=test
    )
    train(cfg)
    return root, test, json.loads((root / "out" / "metrics.json").read_text())


def test_the_head_is_the_ridge_solution_on_the_trained_features(
    refit_run: tuple[Path, Path, dict[str, object]],
) -> None:
    root, _, metrics = refit_run
    schedule, notes = metrics["schedule"], metrics["notes"]
    assert isinstance(schedule, dict) and schedule["optimizer_steps"] > 0  # trained first
    assert isinstance(notes, list) and any(
        "head solved anew by ridge regression on the trained features" in n for n in notes
    )
    assert any(n.startswith("training ") and "then its head solved by ridge regression" in n for n in notes)  # plan
    served = build_served_model(
        ModalitySettings(weights=str(root / "out" / "model.safetensors")).resolve("timeseries"),
        get_adapter("timeseries"),
    )
    module = served.module
    assert module is not None
    torch.manual_seed(3)
    fresh = build_model("timeseries", "unireplknet_a", 4, 4, served.params).state_dict()
    state = module.state_dict()
    stem = next(k for k in state if k.endswith("downsample_layers.0.0.weight"))
    assert not torch.allclose(state[stem], fresh[stem])  # the backbone was trained
    adapter, labels = get_adapter("timeseries"), served.labels
    files = sorted((root / "train").glob("*/*.csv"))  # the whole training split (validation is its own folder)
    features = pooled_features(module, torch.stack([adapter.decode(f.read_bytes(), **served.params) for f in files]))
    y = -np.ones((len(files), len(labels)))
    y[np.arange(len(files)), [labels.index(f.parent.name) for f in files]] = 1.0
    solved = RidgeCV(alphas=ALPHAS).fit(features, y)
    head = next(k for k in state if k.endswith("head.weight"))
    np.testing.assert_allclose(state[head].double().numpy(), solved.coef_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(state[head.replace("weight", "bias")].double().numpy(), solved.intercept_, atol=1e-4)


def test_a_refit_model_serves_as_evaluated(refit_run: tuple[Path, Path, dict[str, object]]) -> None:
    root, test, metrics = refit_run
    deploy = metrics["deploy_check"]
    assert isinstance(deploy, dict) and deploy["passed"]
    report = evaluate("timeseries", test, root / "out" / "model.safetensors", device="cpu", workers=1)
    assert report.accuracy >= 0.5  # 24 series of 4 periods, two short epochs on 24: chance is 0.25


def test_the_cli_offers_every_head() -> None:
    assert CLI_HEADS == HEADS
