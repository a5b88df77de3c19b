"""The JSON bodies the service answers with, as pydantic models: one definition for the routes, the OpenAPI
schema at ``/openapi.json`` and (checked by a test) the SDK's result types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClassifyResponse",
    "EmbedResponse",
    "Health",
    "ModelInfo",
    "ModelsResponse",
    "Prediction",
    "Readiness",
    "Timings",
]


class _Schema(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class Prediction(_Schema):
    label: str
    index: int
    score: float


class Timings(_Schema):
    """Where the request's time went, in milliseconds (also sent as ``X-*-Time-Ms`` headers)."""

    queue_ms: float
    preprocess_ms: float
    inference_ms: float
    total_ms: float


class _Result(_Schema):
    modality: str
    model: str
    weights: str
    """A checkpoint tag, or ``random-init``: random weights are never hidden."""
    timings: Timings
    batch_size: int
    """How many requests shared this one's forward pass (0 for a cache hit)."""


class ClassifyResponse(_Result):
    predictions: list[Prediction]
    top_k: int | None = None
    """Sent only when the asked ``top_k`` was capped: how many predictions came back instead."""
    note: str | None = None
    """Sent only with ``top_k``: why it was capped."""
    preview_png: str | None = None
    """With ``?preview=true``: the PNG of the map the model saw, base64 (as ``POST /preview/{modality}`` draws it)."""


class EmbedResponse(_Result):
    embedding: list[float]
    dim: int


class ModelInfo(_Schema):
    """One model version. A version that does not serve (loading, failed, unloaded, not loaded) has only its name,
    version, state and reason: the rest is known once it serves."""

    name: str | None = Field(default=None, description="what clients address it by: a repository name, or the modality")
    model_version: str | None = Field(
        default=None, description="its version in the model repository (defaults: 1; null: a model not loaded)"
    )
    state: str | None = Field(
        default=None,
        description="READY (serving); LOADING (the service starts, or the version is being loaded); UNAVAILABLE "
        "(not loaded, unloaded, or its load failed: see reason)",
    )
    reason: str | None = Field(default=None, description="why it is not READY, or what happened to it meanwhile")
    modality: str | None = None
    model: str | None = None
    weights: str | None = None
    weights_random: bool | None = None
    num_classes: int | None = None
    label_set: str | None = None
    input_shape: list[int] | None = None
    embedding_dim: int | None = None
    multi_label: bool | None = None
    max_batch_size: int | None = None
    max_delay_ms: float | None = None
    version: str | None = None
    provenance: dict[str, Any] | None = Field(
        default=None,
        description="for a model file made by `unirep train`: when, from which data (fingerprint), by which "
        "command, and its validation figures; null for released, converted or random weights",
    )
    backend: str | None = None
    """The inference backend: torch, openvino, onnxruntime, tensorrt or cudagraphs."""
    backend_note: str | None = None
    """Why that backend: "requested", or for ``auto`` the medians it measured (or that it reused its choice)."""


class ModelsResponse(_Schema):
    models: list[ModelInfo]


class Health(_Schema):
    status: str


class Readiness(_Schema):
    status: str
    error: dict[str, Any] | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a response model, without optional fields left unset."""
    return model.model_dump(mode="json", exclude_unset=True)
