"""The models the service serves, one per enabled modality: what a served model is (``ServedModel``), its one
description (``/models``, the stream workers' announcement, a scale-out gateway's rebuilt copy), its version (part
of every cache key) and the decoder params and labels its settings give. ``servable.build`` builds
them.

Weights policy: ``weights = "auto"`` means the variant's released ImageNet-1K
checkpoint through the hub when it is reachable (``HF_HUB_OFFLINE=1`` skips the attempt) and random
initialization otherwise; no weights means random initialization; a path or hub reference is loaded strictly.
Whatever happened is logged loudly and carried in ``ServedModel.weights``, which every response and ``GET /models``
report, so random weights are never hidden.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from models import CheckpointError, LoadedWeights, get_model_config
from servable.config import ModalityConfig
from servable.labels import load_labels
from servable.trained import apply_trained, trained_info


@dataclass
class ServedModel:
    config: ModalityConfig
    module: nn.Module | None
    """Has ``forward_features`` (pooled embedding) and ``forward_head`` (logits), in eval and deploy form; None on
    a scale-out gateway, whose batches run on stream workers."""
    weights: LoadedWeights
    labels: tuple[str, ...]
    params: dict[str, Any]
    """Adapter params the decoder runs with (model config constants + the section's overrides)."""
    input_shape: tuple[int, int, int]
    """What the adapter produces: the batching bucket's shape."""
    embedding_dim: int
    provenance: dict[str, Any] | None = None
    """For a file made by ``unirep train``: when, from which data, by which command, and its validation figures."""
    weights_digest: str = ""
    """sha256 of the served state (every tensor, after reparameterization): identifies the actual weights."""
    backend: str | None = None
    """The inference backend its device workers run (set once they are built; None until then); where devices
    chose differently, each device's (``cuda:0 tensorrt, cuda:1 torch``)."""
    backend_note: str | None = None
    """Why that backend: "requested", or for ``auto`` the medians measured (or that the choice was remembered); where
    the devices' reasons differ, each device's."""
    backend_by_device: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Each device worker's backend and its reason, by device name: ``auto`` measures on each device."""
    repository_name: str | None = None
    """The model's name in the model repository; None for a modality's default model (named after the modality)."""
    repository_version: int | None = None
    """Its version number in the repository (a default model is version 1)."""
    serving_key: str | None = None
    """What the batcher and device workers know this loaded model by: unique among the loaded ones, so a new
    version (or new weights for the same version) is installed beside the one it replaces, never over it."""

    def record_backend(self, device: str, name: str, reason: str) -> None:
        """Note the backend ``device`` runs this model on; ``backend`` and ``backend_note`` then describe every
        device (one name where all agree, never only the device that reported last)."""
        self.backend_by_device[device] = (name, reason)
        chosen = self.backend_by_device.items()
        names, reasons = {n for _, (n, _) in chosen}, {r for _, (_, r) in chosen}
        self.backend = name if len(names) == 1 else ", ".join(f"{d} {n}" for d, (n, _) in chosen)
        self.backend_note = reason if len(reasons) == 1 else "; ".join(f"{d}: {r}" for d, (_, r) in chosen)

    @property
    def modality(self) -> str:
        return self.config.modality

    @property
    def name(self) -> str:
        return self.config.model

    @property
    def model_name(self) -> str:
        """The name clients address it by (V2 model name, ``?model=``): its repository name, else its modality."""
        return self.repository_name or self.modality

    @property
    def model_version(self) -> str:
        return str(self.repository_version or 1)

    @property
    def key(self) -> str:
        return self.serving_key or self.modality

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def version(self) -> str:
        """Model + weights + preprocessing: part of every cache key, so that a change never serves stale results."""
        parts: list[Any] = [self.name, self.weights.source, self.weights_digest, self.params, self.config.multi_label]
        if self.repository_name is not None:  # same weights under another label list answer differently
            parts.append(list(self.labels))
        if self.provenance is not None:  # a retrained file at the same path is another model
            parts.append([self.provenance.get("created"), self.provenance.get("data_fingerprint")])
        blob = json.dumps(parts, sort_keys=True, default=str)
        return f"{self.name}@{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def summary(self) -> str:
        """One line for the start-up log: modality, model, weights and backend."""
        return f"{self.modality}={self.name} ({self.weights.source}, backend {self.backend or 'on the workers'})"

    def describe(self) -> dict[str, Any]:
        """The one description of a served model: ``GET /models`` lists it, a stream worker announces it, and a
        scale-out gateway rebuilds its own ``ServedModel`` from it (``from_description``)."""
        return {
            "name": self.model_name,
            "model_version": self.model_version,
            "modality": self.modality,
            "model": self.name,
            "weights": self.weights.source,
            "weights_random": self.weights.is_random,
            "num_classes": self.num_classes,
            "label_set": self.config.label_set,
            "input_shape": list(self.input_shape),
            "embedding_dim": self.embedding_dim,
            "multi_label": self.config.multi_label,
            "max_batch_size": self.config.max_batch_size,
            "max_delay_ms": self.config.max_delay_ms,
            "version": self.version,
            "backend": self.backend,
            "backend_note": self.backend_note,
            "provenance": self.provenance,
            "weights_detail": {
                "form": self.weights.form,
                "in_chans": self.weights.in_chans,
                "digest": self.weights_digest,
            },
        }

    @classmethod
    def from_description(
        cls, cfg: ModalityConfig, adapter: Any, desc: dict[str, Any], repository: tuple[str, int, str] | None = None
    ) -> ServedModel:
        """A model served elsewhere, as this process's settings describe it: no module. Settings that disagree
        with the description (another version or input shape) are refused, so the cache never mixes them.
        ``repository``: a repository version's name, version number and serving key."""
        trained = trained_info(cfg)  # a file made by `unirep train` configures the modality itself
        if trained is not None:
            cfg = apply_trained(cfg, trained)
        params = adapter_params(cfg, adapter)
        shape = tuple(int(v) for v in adapter.output_shape(**params))
        detail = desc.get("weights_detail") or {}
        weights = LoadedWeights(
            desc["weights"], detail.get("form"), int(desc["num_classes"]), detail.get("in_chans", 0)
        )
        labels = trained.labels if trained is not None else configured_labels(cfg)
        provenance = trained.provenance() if trained is not None else None
        dims = (shape[0], shape[1], shape[2])
        model = cls(
            cfg,
            None,
            weights,
            labels,
            params,
            dims,
            int(desc["embedding_dim"]),
            provenance,
            str(detail.get("digest", "")),
        )
        model.backend, model.backend_note = desc.get("backend"), desc.get("backend_note")
        if repository is not None:
            model.repository_name, model.repository_version, model.serving_key = repository
        if model.version != desc["version"] or list(model.input_shape) != list(desc["input_shape"]):
            raise ValueError(
                f"[{cfg.modality}] these settings describe {model.version} with input {list(model.input_shape)}, "
                f"but the workers serve {desc['version']} with input {desc['input_shape']}: give gateways and "
                "workers the same model settings"
            )
        return model


def adapter_params(cfg: ModalityConfig, adapter: Any) -> dict[str, Any]:
    """The decoder's params: the model config's constants (image: size, crop, mean, std), then the overrides."""
    params = dict(adapter.model_params(get_model_config(cfg.model)))
    params.update(cfg.params)
    adapter.resolve_params(**params)  # fail at startup, not on the first request
    return params


def configured_labels(cfg: ModalityConfig) -> tuple[str, ...]:
    """The labels the settings give (a label set, or ``class_i`` names) when no trained file carries its own."""
    if cfg.label_set is not None:
        labels = load_labels(cfg.label_set)
        if cfg.num_classes is not None and cfg.num_classes != len(labels):
            raise CheckpointError(
                f"[{cfg.modality}] label_set {cfg.label_set} has {len(labels)} labels, "
                f"but num_classes is {cfg.num_classes}"
            )
        return labels
    n = cfg.num_classes or 2
    return tuple(f"class_{i}" for i in range(n))


LOAD_SERIAL_MARK = "#"
"""Separates a serving key's load serial (``pets/2#3``: the third load of version 2 of ``pets``) from its name."""


def metrics_label(serving_key: str) -> str:
    """The label metrics carry for a serving key: without the load serial, so reloading a version does not grow the
    metric series without bound (``pets/2#3`` -> ``pets/2``; a default model's key is its modality, unchanged)."""
    return serving_key.split(LOAD_SERIAL_MARK, 1)[0]
