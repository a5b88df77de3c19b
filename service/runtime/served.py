"""The models the service serves, built once from the settings: one per enabled modality.

Weights policy: ``weights = "auto"`` means the variant's released ImageNet-1K
checkpoint through the hub when it is reachable (``HF_HUB_OFFLINE=1`` skips the attempt) and random
initialization otherwise; no weights means random initialization; a path or hub reference is loaded strictly.
Whatever happened is logged loudly and carried in ``ServedModel.weights``, which every response and ``GET /models``
report, so random weights are never hidden.

Time series is the one composite model: its front end (the learned ``TimeSeriesEmbedding``, adapter output ->
1 x H x W image, or identity for weight-free maps) followed by UniRepLKNet with as many input channels as the
params give; a checkpoint holds both (``embedding.*`` keys, when the front end has weights, beside the backbone's).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from modality_adapters import AUTO_WEIGHTS
from modality_adapters.timeseries_embedding import TimeSeriesModel
from models import (
    CheckpointError,
    LoadedWeights,
    create_model,
    get_model_config,
    load_checkpoint,
    load_model,
    read_state_dict,
    resolve_weights,
)
from models.checkpoint import detect_form
from service.labels import load_labels
from service.runtime.trained import apply_trained, trained_info
from service.settings import ModalityConfig
from unirep_errors import ModelError

log = logging.getLogger(__name__)


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
    """The inference backend its device workers run (set once they are built; None until then)."""

    @property
    def modality(self) -> str:
        return self.config.modality

    @property
    def name(self) -> str:
        return self.config.model

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def version(self) -> str:
        """Model + weights + preprocessing: part of every cache key, so that a change never serves stale results."""
        parts: list[Any] = [self.name, self.weights.source, self.weights_digest, self.params, self.config.multi_label]
        if self.provenance is not None:  # a retrained file at the same path is another model
            parts.append([self.provenance.get("created"), self.provenance.get("data_fingerprint")])
        blob = json.dumps(parts, sort_keys=True, default=str)
        return f"{self.name}@{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def describe(self) -> dict[str, Any]:
        """The one description of a served model: ``GET /models`` lists it, a stream worker announces it, and a
        scale-out gateway rebuilds its own ``ServedModel`` from it (``from_description``)."""
        return {
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
            "provenance": self.provenance,
            "weights_detail": {
                "form": self.weights.form,
                "in_chans": self.weights.in_chans,
                "digest": self.weights_digest,
            },
        }

    @classmethod
    def from_description(cls, cfg: ModalityConfig, adapter: Any, desc: dict[str, Any]) -> ServedModel:
        """A model served elsewhere, as this process's settings describe it: no module. Settings that disagree
        with the description (another version or input shape) are refused, so the cache never mixes them."""
        trained = trained_info(cfg)  # a file made by `unirep train` configures the modality itself
        if trained is not None:
            cfg = apply_trained(cfg, trained)
        params = adapter_params(cfg, adapter)
        shape = tuple(int(v) for v in adapter.output_shape(**params))
        detail = desc.get("weights_detail") or {}
        weights = LoadedWeights(
            desc["weights"], detail.get("form"), int(desc["num_classes"]), detail.get("in_chans", 0)
        )
        labels = trained.labels if trained is not None else _labels(cfg)
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
        model.backend = desc.get("backend")
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


def _labels(cfg: ModalityConfig) -> tuple[str, ...]:
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


def _resolve_auto(cfg: ModalityConfig) -> str | None:
    """The released checkpoint's local path, or None (random init) when the hub cannot be reached."""
    spec = get_model_config(cfg.model).weights_spec()
    if spec is None:
        log.warning("[%s] %s has no released weights: RANDOM INITIALIZATION", cfg.modality, cfg.model)
        return None
    try:
        return str(resolve_weights(cfg.model))
    except CheckpointError as exc:
        log.warning("[%s] could not get %s (%s)", cfg.modality, spec.filename, exc.message)
        return None


def init_seed(seed: int, cfg: ModalityConfig) -> int:
    """The seed of one model's random initialization: the setting mixed with the model and modality names, so
    that every process (gateways, workers, restarts) builds the same random model and modalities differ."""
    digest = hashlib.sha256(f"{seed}:{cfg.model}:{cfg.modality}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def state_digest(module: nn.Module) -> str:
    """sha256 over every tensor of the state (name, dtype, shape, bytes), in name order."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        hasher.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        hasher.update(flat.view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def build_served_model(cfg: ModalityConfig, adapter: Any, seed: int = 0) -> ServedModel:
    """Build one modality's model; random parts are seeded by ``init_seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(seed, cfg))
        served = _build(cfg, adapter)
    assert served.module is not None  # built here, not described from elsewhere
    served.weights_digest = state_digest(served.module)
    return served


def _build(cfg: ModalityConfig, adapter: Any) -> ServedModel:
    trained = trained_info(cfg)
    if trained is not None:
        cfg = apply_trained(cfg, trained)
    params = adapter_params(cfg, adapter)
    input_shape = tuple(int(v) for v in adapter.output_shape(**params))
    if cfg.modality != "timeseries":
        cfg = _with_map_channels(cfg, input_shape[0])
    labels = trained.labels if trained is not None else _labels(cfg)
    weights = cfg.weights
    adapt_stem, reinit_head = cfg.adapt_stem, cfg.reinit_head
    if weights == AUTO_WEIGHTS:
        weights = _resolve_auto(cfg)
        adapt_stem = adapt_stem or cfg.in_chans != 3
        reinit_head = reinit_head or len(labels) != get_model_config(cfg.model).num_classes
    module: nn.Module
    if cfg.modality == "timeseries":
        module, info = _build_timeseries(cfg, params, weights, len(labels), adapt_stem, reinit_head)
        embedding_dim = get_model_config(cfg.model).dims[-1]
    else:
        model, info = load_model(
            cfg.model,
            weights,
            in_chans=cfg.in_chans,
            num_classes=len(labels),
            deploy=True,
            adapt_stem=adapt_stem,
            reinit_head=reinit_head,
        )
        module, embedding_dim = model, model.dims[-1]
    module.eval()
    if info.is_random:
        log.warning(
            "[%s] %s serves RANDOMLY INITIALIZED weights: its predictions are meaningless "
            "(configure %s.weights with a checkpoint)",
            cfg.modality,
            cfg.model,
            cfg.modality,
        )
    else:
        log.info(
            "[%s] %s serves weights %s (%s)",
            cfg.modality,
            cfg.model,
            info.source,
            "; ".join(info.notes) or "as released",
        )
    provenance = trained.provenance() if trained is not None else None
    shape = (input_shape[0], input_shape[1], input_shape[2])
    return ServedModel(cfg, module, info, labels, params, shape, embedding_dim, provenance)


def _with_map_channels(cfg: ModalityConfig, channels: int) -> ModalityConfig:
    """The model takes as many channels as the adapter's map has (a params choice such as video's ``channels``
    layout changes them); an explicit ``in_chans`` that disagrees is a start-up error, not a failed warm-up."""
    if cfg.in_chans == channels:
        return cfg
    if "in_chans" in cfg.explicit:
        raise ModelError(
            f"[{cfg.modality}] in_chans is {cfg.in_chans}, but the {cfg.modality} params make {channels}-channel "
            f"maps; remove in_chans or set it to {channels}"
        )
    return replace(cfg, in_chans=channels)


def _build_timeseries(
    cfg: ModalityConfig,
    params: dict[str, Any],
    weights: str | None,
    num_classes: int,
    adapt_stem: bool,
    reinit_head: bool,
) -> tuple[TimeSeriesModel, LoadedWeights]:
    from modality_adapters import TimeSeriesAdapter

    adapter = TimeSeriesAdapter()
    in_chans = adapter.resolve_params(**params).backbone_in_chans
    embedding = adapter.front_end(**params)
    if weights is None:
        backbone, info = load_model(cfg.model, None, in_chans=in_chans, num_classes=num_classes, deploy=True)
        return TimeSeriesModel(embedding, backbone), info
    path = resolve_weights(weights)
    state = read_state_dict(path)
    emb_state = {k[len("embedding.") :]: v for k, v in state.items() if k.startswith("embedding.")}
    rest = {k: v for k, v in state.items() if not k.startswith("embedding.")}
    learned = any(True for _ in embedding.parameters())
    if learned and not emb_state:
        raise CheckpointError(f"{path} has no 'embedding.*' weights: a time-series checkpoint holds the embedding too")
    if emb_state and not learned:
        raise CheckpointError(
            f"{path} holds a learned embedding, but the params say representation "
            f"{params.get('representation')!r}: set the representation the checkpoint was trained with"
        )
    try:
        embedding.load_state_dict(emb_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the time-series embedding does not fit: {exc}") from None
    form = detect_form(rest)
    backbone = create_model(cfg.model, in_chans=in_chans, num_classes=num_classes, deploy=form == "deploy")
    notes = load_checkpoint(backbone, rest, reinit_head=reinit_head, adapt_stem_channels=adapt_stem, origin=str(path))
    backbone.eval()
    if form == "train":
        backbone.reparameterize()
    return TimeSeriesModel(embedding, backbone), LoadedWeights(str(weights), form, num_classes, in_chans, tuple(notes))
