"""The moving average of the weights (``--ema``): its arithmetic, and that the model file holds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.training.helpers import make_dataset, small_config
from training import TrainConfig, train
from training.averaging import WeightAverage
from unirep_errors import InvalidParameterError


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _set(net: nn.Module, value: float, batches: int) -> None:
    with torch.no_grad():
        for tensor in net.state_dict().values():
            tensor.fill_(batches if not tensor.is_floating_point() else value)


def test_average_weighs_each_step_by_decay_and_forgets_the_initialisation() -> None:
    net, decay = _net(), 0.5
    _set(net, 100.0, 0)  # the initialisation: must not leak into the average
    average = WeightAverage(net, decay)
    values = [1.0, 2.0, 4.0]
    for t, value in enumerate(values, start=1):
        _set(net, value, t)
        average.update(net)
        weights = [decay ** (t - i) for i in range(1, t + 1)]
        expected = sum(w * v for w, v in zip(weights, values[:t], strict=True)) / sum(weights)
        assert torch.allclose(average.state["0.weight"], torch.full((2, 3), expected))
        assert torch.allclose(average.state["1.running_var"], torch.full((2,), expected))
        assert int(average.state["1.num_batches_tracked"]) == t  # integer buffers are copied, not averaged
    assert float(average.state["0.bias"][0]) == pytest.approx((0.25 * 1 + 0.5 * 2 + 1 * 4) / 1.75)


def test_swapped_in_restores_the_training_weights() -> None:
    net = _net()
    _set(net, 1.0, 1)
    average = WeightAverage(net, 0.9)
    average.update(net)
    _set(net, 3.0, 2)
    with average.swapped_in(net):
        assert float(net[0].weight.detach()[0, 0]) == 1.0
    assert float(net[0].weight.detach()[0, 0]) == 3.0


def test_decay_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError):
        WeightAverage(_net(), 1.0)
    cfg = TrainConfig(modality="image", data="d", out="o", ema=1.5)
    with pytest.raises(InvalidParameterError, match="--ema"):
        cfg.check()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("averaging") / "data", "image", per_class=5)


def test_model_file_holds_the_average_and_the_run_reports_both(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = train(small_config("image", data, out, tmp_path / "cache", epochs=2, ema=0.9, select="last"))
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    saved = load_file(result.weights)
    averaged_head = checkpoint["average"]["state"]["head.weight"]
    assert torch.equal(saved["head.weight"], averaged_head)
    assert not torch.allclose(saved["head.weight"], checkpoint["model"]["head.weight"])  # not the last step's
    assert checkpoint["average"]["steps"] == sum(e["steps"] for e in checkpoint["history"])
    epoch = json.loads((out / "metrics.json").read_text())["epochs"][-1]
    assert {"val_acc", "val_loss", "val_acc_last_step", "val_loss_last_step"} <= set(epoch)
    assert epoch["val_loss"] != epoch["val_loss_last_step"]


def test_resume_carries_the_average(data: Path, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = {"ema": 0.9, "select": "last", "drop_path": 0.0}
    train(small_config("image", data, straight, tmp_path / "c1", epochs=2, **common))
    train(small_config("image", data, split, tmp_path / "c2", epochs=1, **common))
    train(small_config("image", data, split, tmp_path / "c2", epochs=2, resume=str(split), **common))
    one = torch.load(straight / "checkpoint.pt", weights_only=False)["average"]
    two = torch.load(split / "checkpoint.pt", weights_only=False)["average"]
    assert one["steps"] == two["steps"]
    for name, value in one["state"].items():
        assert torch.allclose(value, two["state"][name], atol=1e-6), name
