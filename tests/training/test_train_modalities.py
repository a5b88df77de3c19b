"""Every modality: train one epoch on a tiny real-media set, then serve the file exactly as ``unirep serve`` does.

The served model (built from the file alone: no label set, no params configured) must carry the data's labels
and the training params, reproduce the train form's logits (the recorded deploy check) and classify a freshly
decoded file of the data set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modality_adapters import get_adapter
from models.trained import read_trained_info
from servable.build import build_served_model
from service.settings import ModalitySettings
from tests.training.helpers import CLASSES, SMALL, make_dataset, small_config
from training import train

MODALITIES = list(CLASSES)


@pytest.mark.parametrize("modality", MODALITIES)
def test_train_reload_and_serve(tmp_path: Path, modality: str) -> None:
    data = make_dataset(tmp_path / "data", modality)
    result = train(small_config(modality, data, tmp_path / "out", tmp_path / "cache"))
    labels = sorted(CLASSES[modality][1])
    assert result.labels == labels
    assert result.num_train == 6 and result.num_val == 2
    assert 0.0 <= result.deploy_max_rel_diff <= 1e-4
    for name in ("model.safetensors", "metrics.json", "confusion.png", "curves.png", "checkpoint.pt"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name

    info = read_trained_info(result.weights)
    assert info is not None
    assert (info.modality, info.model, list(info.labels)) == (modality, "unireplknet_a", labels)
    for key, value in SMALL[modality].items():
        assert info.params[key] == value
    for key, value in get_adapter(modality).training_params().items():  # recorded, so serving applies them
        assert info.params[key] == value
    assert info.metrics["deploy_max_rel_diff"] == result.deploy_max_rel_diff
    assert len(info.data_fingerprint) == 16

    served = build_served_model(ModalitySettings(weights=str(result.weights)).resolve(modality), get_adapter(modality))
    assert list(served.labels) == labels
    assert served.provenance is not None and served.provenance["validation"]["accuracy"] == result.val_accuracy
    sample = next((data / labels[0]).iterdir()).read_bytes()
    x = get_adapter(modality).decode(sample, **served.params).unsqueeze(0)
    with torch.no_grad():
        logits = served.module(x)
    assert logits.shape == (1, len(labels)) and torch.isfinite(logits).all()

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and metrics["deploy_check"]["passed"]
    assert metrics["validation"]["labels"] == labels


def test_video_training_reads_every_frame_of_clips_shorter_than_the_served_window(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", "video")  # clips of 8 frames
    params = {k: v for k, v in SMALL["video"].items() if k != "sampling_rate"}  # 4 frames 4 apart span 13
    result = train(small_config("video", data, tmp_path / "out", tmp_path / "cache", params=params))
    info = read_trained_info(result.weights)
    assert info is not None and info.params["sampling_rate"] == 2  # 4 frames 2 apart span 7 of the 8
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "chosen from the training files: sampling_rate=2" in metrics["notes"]
    served = build_served_model(ModalitySettings(weights=str(result.weights)).resolve("video"), get_adapter("video"))
    assert served.params["sampling_rate"] == 2
