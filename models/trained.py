"""The contract a trained model file carries: everything serving needs, in the safetensors metadata.

``unirep train`` writes a deploy-form ``model.safetensors`` whose metadata (string to string, as safetensors
requires; structured values are JSON) names the modality, variant, input channels, labels, adapter params, the
multi-label flag, the validation metrics, a fingerprint of the training data and the command that made it. The
service reads it back so that ``weights = "DIR/model.safetensors"`` alone is a complete configuration.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unirep_errors import CheckpointError

TRAINED_FORMAT = "unirep-trained/1"


@dataclass(frozen=True)
class TrainedModelInfo:
    """The metadata of a trained model file."""

    modality: str
    model: str
    in_chans: int
    labels: tuple[str, ...]
    params: dict[str, Any]
    multi_label: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    command: str = ""
    created: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": TRAINED_FORMAT,
            "modality": self.modality,
            "model": self.model,
            "in_chans": str(self.in_chans),
            "num_classes": str(self.num_classes),
            "labels": json.dumps(list(self.labels)),
            "params": json.dumps(self.params, sort_keys=True),
            "multi_label": json.dumps(self.multi_label),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "data_fingerprint": self.data_fingerprint,
            "command": self.command,
            "created": self.created,
            "source_form": "train",
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], origin: str) -> TrainedModelInfo:
        try:
            labels = tuple(str(x) for x in json.loads(meta["labels"]))
            info = cls(
                modality=meta["modality"],
                model=meta["model"],
                in_chans=int(meta["in_chans"]),
                labels=labels,
                params=dict(json.loads(meta["params"])),
                multi_label=bool(json.loads(meta.get("multi_label", "false"))),
                metrics=dict(json.loads(meta.get("metrics", "{}"))),
                data_fingerprint=meta.get("data_fingerprint", ""),
                command=meta.get("command", ""),
                created=meta.get("created", ""),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{origin}: damaged trained-model metadata ({type(exc).__name__}: {exc})") from None
        if int(meta.get("num_classes", len(labels))) != len(labels):
            raise CheckpointError(f"{origin}: metadata says {meta['num_classes']} classes but lists {len(labels)}")
        return info

    def provenance(self) -> dict[str, Any]:
        """What ``GET /models`` shows about where the weights came from and how good they are."""
        return {
            "trained_by": "unirep train",
            "created": self.created,
            "data_fingerprint": self.data_fingerprint,
            "command": self.command,
            "validation": self.metrics,
        }


def read_trained_info(path: str | os.PathLike[str]) -> TrainedModelInfo | None:
    """The trained-model metadata of ``path``; None for any other checkpoint (released, converted, ``.pth``)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if meta.get("format") != TRAINED_FORMAT:
        return None
    return TrainedModelInfo.from_metadata(meta, str(path))


def save_trained_model(state: dict[str, torch.Tensor], path: str | os.PathLike[str], info: TrainedModelInfo) -> None:
    """Write a deploy-form state_dict with ``info`` as its metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, os.fspath(path), metadata=info.to_metadata())
    os.chmod(path, 0o644)  # a model file is meant to be read by the service's user, not only the trainer
