"""Building a served model from its settings: weights resolved (released, trained, given or random), the network
made in the input channels the adapter's map has, random parts seeded so every process builds the same model, and
the state digested so that answers name the exact weights.

An adapter that declares a model front end (a ``front_end(**params)`` method, with ``backbone_in_chans`` in its
resolved params) gets a composite model: that front end (e.g. a learned embedding of the adapter's output into a
1 x H x W image, or identity for weight-free maps) followed by UniRepLKNet with as many input channels as the params
give; a checkpoint holds both (``embedding.*`` keys, when the front end has weights, beside the backbone's). Every
other adapter's map goes straight into UniRepLKNet, whose stem takes as many channels as the map has.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from modality_adapters import AUTO_WEIGHTS
from modality_adapters.timeseries_embedding import TimeSeriesModel as FrontEndModel
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
from models.trained import TrainedModelInfo
from servable.config import ModalityConfig
from servable.served import ServedModel, adapter_params, configured_labels
from servable.trained import apply_trained, trained_info
from unirep_errors import ModelError

log = logging.getLogger(__name__)


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
    composite = has_front_end(adapter)
    if not composite:
        cfg = _with_map_channels(cfg, input_shape[0])
    labels = trained.labels if trained is not None else configured_labels(cfg)
    weights = cfg.weights
    adapt_stem, reinit_head = cfg.adapt_stem, cfg.reinit_head
    if weights == AUTO_WEIGHTS:
        weights = _resolve_auto(cfg)
        adapt_stem = adapt_stem or cfg.in_chans != 3
        reinit_head = reinit_head or len(labels) != get_model_config(cfg.model).num_classes
    module: nn.Module
    if composite:
        module, info = _build_composite(cfg, adapter, params, weights, len(labels), adapt_stem, reinit_head)
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
        log.info("[%s] %s serves weights %s (%s)", cfg.modality, cfg.model, info.source, _origin(info, trained))
    provenance = trained.provenance() if trained is not None else None
    shape = (input_shape[0], input_shape[1], input_shape[2])
    return ServedModel(cfg, module, info, labels, params, shape, embedding_dim, provenance)


def _origin(info: LoadedWeights, trained: TrainedModelInfo | None) -> str:
    """How the log names where weights came from: a file of ``unirep train`` is trained here (with its data
    fingerprint, so two runs are told apart), anything else is as released unless loading had to adapt it."""
    if trained is not None:
        accuracy = trained.metrics.get("accuracy")
        parts = [f"trained by unirep train {trained.created}".rstrip()]
        parts.append(f"data fingerprint {trained.data_fingerprint[:16] or 'unknown'}")
        if isinstance(accuracy, int | float):
            parts.append(f"validation accuracy {accuracy:.4f}")
        return "; ".join(parts + list(info.notes))
    return "; ".join(info.notes) or "as released"


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


def has_front_end(adapter: Any) -> bool:
    """Whether the adapter declares a model front end (its maps are not UniRepLKNet's input as they are)."""
    return callable(getattr(adapter, "front_end", None))


def _build_composite(
    cfg: ModalityConfig,
    adapter: Any,
    params: dict[str, Any],
    weights: str | None,
    num_classes: int,
    adapt_stem: bool,
    reinit_head: bool,
) -> tuple[FrontEndModel, LoadedWeights]:
    in_chans = adapter.resolve_params(**params).backbone_in_chans
    embedding = adapter.front_end(**params)
    if weights is None:
        backbone, info = load_model(cfg.model, None, in_chans=in_chans, num_classes=num_classes, deploy=True)
        return FrontEndModel(embedding, backbone), info
    path = resolve_weights(weights)
    state = read_state_dict(path)
    emb_state = {k[len("embedding.") :]: v for k, v in state.items() if k.startswith("embedding.")}
    rest = {k: v for k, v in state.items() if not k.startswith("embedding.")}
    learned = any(True for _ in embedding.parameters())
    if learned and not emb_state:
        raise CheckpointError(
            f"{path} has no 'embedding.*' weights: a {cfg.modality} checkpoint holds the embedding too"
        )
    if emb_state and not learned:
        raise CheckpointError(
            f"{path} holds a learned embedding, but the params say representation "
            f"{params.get('representation')!r}: set the representation the checkpoint was trained with"
        )
    try:
        embedding.load_state_dict(emb_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the {cfg.modality} embedding does not fit: {exc}") from None
    form = detect_form(rest)
    backbone = create_model(cfg.model, in_chans=in_chans, num_classes=num_classes, deploy=form == "deploy")
    notes = load_checkpoint(backbone, rest, reinit_head=reinit_head, adapt_stem_channels=adapt_stem, origin=str(path))
    backbone.eval()
    if form == "train":
        backbone.reparameterize()
    return FrontEndModel(embedding, backbone), LoadedWeights(str(weights), form, num_classes, in_chans, tuple(notes))
