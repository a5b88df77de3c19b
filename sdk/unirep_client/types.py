"""Typed results of the service's endpoints.

Every model allows extra fields: a server newer than this SDK may add fields to a response, and an old client
must keep working (the new fields stay readable as attributes and in ``model_dump()``). Fields the contract
marks as essential are required; the rest default to ``None`` so that an older or trimmed server still parses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ClassifyResult", "EmbedResult", "Health", "ModelInfo", "Prediction", "RepositoryEntry", "Timings"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Prediction(_Model):
    """One class of the top-k, most likely first."""

    label: str
    index: int
    score: float
    """Softmax (single-label sets) or sigmoid (multi-label sets such as AudioSet) probability."""


class Timings(_Model):
    """Where the time of one request went, in milliseconds, as measured by the server."""

    queue_ms: float | None = None
    preprocess_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None


class _Result(_Model):
    modality: str
    model: str
    """The variant that served the request, e.g. ``unireplknet_a``."""
    weights: str
    """Which weights answered: a checkpoint tag, or ``random-init`` (then the predictions mean nothing)."""
    timings: Timings = Field(default_factory=Timings)
    batch_size: int | None = None
    """How many requests shared this one's forward pass."""
    request_id: str | None = None
    """The server's id for this request (from ``X-Request-Id``); quote it when reporting a problem."""
    cache: str | None = None
    """``hit`` or ``miss`` when the server has a result cache (from ``X-Cache``), else None."""


class ClassifyResult(_Result):
    """Answer of ``POST /classify/{modality}``."""

    predictions: list[Prediction]

    @property
    def top(self) -> Prediction | None:
        """The most likely class, or None when the server returned no predictions (``top_k=0``)."""
        return self.predictions[0] if self.predictions else None


class EmbedResult(_Result):
    """Answer of ``POST /embed/{modality}``: the pooled features the classifier head reads."""

    embedding: list[float]
    dim: int


class ModelInfo(_Model):
    """One model version as listed by ``GET /models``: every serving one, then the versions the model repository
    knows that do not serve (state LOADING or UNAVAILABLE, with the reason; their other fields are None)."""

    name: str | None = None
    """What it is addressed by (``model=``): its repository name, or the modality for a modality's default model."""
    model_version: str | None = None
    state: str | None = None
    """READY (serving), LOADING, or UNAVAILABLE (not loaded, unloaded, or its load failed)."""
    reason: str | None = None
    """Why it is not READY (e.g. the error of a failed load)."""
    modality: str | None = None
    """None for a version that does not serve."""
    model: str | None = None
    weights: str | None = None
    weights_random: bool | None = None
    num_classes: int | None = None
    label_set: str | None = None
    input_shape: list[int] | None = None
    max_batch_size: int | None = None
    max_delay_ms: float | None = None
    provenance: dict[str, Any] | None = None
    """For a model trained with ``unirep train``: created, data fingerprint, command, validation figures."""
    backend: str | None = None
    """The inference backend serving it (torch, openvino, onnxruntime, tensorrt, cudagraphs); None when remote."""
    backend_note: str | None = None
    """Why that backend: "requested", or for ``auto`` the medians measured (or that the remembered choice was used)."""


class Health(_Model):
    """Answer of ``GET /healthz``: the process is alive (not necessarily ready to serve)."""

    status: str


class RepositoryEntry(_Model):
    """One model version in the repository index (``Client.repository_index``)."""

    name: str
    version: str
    """Empty for a model of the repository that is not loaded."""
    state: str
    """READY, LOADING or UNAVAILABLE."""
    reason: str = ""
    """Why it is not ready (e.g. the error of a failed load)."""
