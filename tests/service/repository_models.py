"""Tiny model files for the model-repository tests: what ``unirep train`` writes (a deploy-form state with the
metadata that says modality, labels and params), made directly with ``models.trained.save_trained_model``."""

from __future__ import annotations

from pathlib import Path

import torch

from models import create_model
from models.trained import TrainedModelInfo, save_trained_model

PARAMS = {"input_size": 64}
"""The image params of ``tests.service.server.SMALL``: a repository model decodes like the default model."""


def write_image_model(path: Path, labels: tuple[str, ...], seed: int, params: dict[str, int] | None = None) -> bytes:
    """A random ``unireplknet_a`` image classifier with ``labels`` (and image ``params``); returns the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_model("unireplknet_a", in_chans=3, num_classes=len(labels), deploy=True)
    info = TrainedModelInfo("image", "unireplknet_a", 3, labels, dict(params or PARAMS), created=f"seed {seed}")
    save_trained_model(net.state_dict(), path, info)
    return path.read_bytes()


def version_file(repository: Path, name: str, version: int) -> Path:
    return repository / name / str(version) / "model.safetensors"
