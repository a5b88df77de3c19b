"""OpenAPI text for ``/docs``: what the inference routes accept, with examples (FastAPI cannot infer a body it
never parses itself: the gateway reads it with a size limit and accepts three encodings)."""

from __future__ import annotations

from typing import Any

from modality_adapters import adapter_class, list_adapters

_CLASSIFY_EXAMPLE = {
    "modality": "image",
    "model": "unireplknet_a",
    "weights": "random-init",
    "predictions": [{"label": "tabby, tabby cat", "index": 281, "score": 0.93}],
    "timings": {"queue_ms": 1.2, "preprocess_ms": 4.1, "inference_ms": 14.8, "total_ms": 21.0},
    "batch_size": 3,
}
_EMBED_EXAMPLE = {
    "modality": "audio",
    "model": "unireplknet_a",
    "weights": "random-init",
    "embedding": [0.12, -0.53, 0.08],
    "dim": 320,
    "timings": {"queue_ms": 0.4, "preprocess_ms": 6.3, "inference_ms": 9.7, "total_ms": 17.5},
    "batch_size": 1,
}
_ERROR_EXAMPLE = {"error": {"code": "queue_full", "message": "the image queue is full (256 waiting); retry after 1 s"}}


def _body() -> dict[str, Any]:
    return {
        "required": True,
        "description": (
            "The input, as a multipart upload in field `file` (`curl -F file=@photo.jpg`), as the raw body with its "
            "content type (`--data-binary @clip.wav -H 'Content-Type: audio/wav'`), or as JSON for time series "
            '(`{"data": [[...V values...], ...T rows], "timestamps": ["2024-01-01T00:00:00", ...]}`) and point '
            'clouds (`{"points": [[x, y, z], ...]}`). Headers: `X-Request-Timeout-Ms` sets the deadline (504 when '
            "it cannot be met), `X-Request-Id` is echoed."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {"type": "object"},
                "examples": {
                    name: {"value": adapter_class(name).json_example}
                    for name in list_adapters()
                    if adapter_class(name).json_example is not None
                },
            },
        },
    }


def _responses(example: dict[str, Any]) -> dict[str, Any]:
    err = {"application/json": {"example": _ERROR_EXAMPLE}}
    return {
        "200": {
            "description": "the result, with timings; headers X-Queue-Time-Ms, X-Preprocess-Time-Ms, "
            "X-Inference-Time-Ms, X-Batch-Size, X-Cache, X-Request-Id",
            "content": {"application/json": {"example": example}},
        },
        "404": {"description": "unknown or disabled modality", "content": err},
        "413": {"description": "payload over a size limit (bytes, pixels, seconds, points)", "content": err},
        "415": {"description": "unsupported file type", "content": err},
        "422": {"description": "undecodable input, decoder crash, or an invalid parameter", "content": err},
        "429": {"description": "queue full; Retry-After says when to retry", "content": err},
        "503": {"description": "starting or draining; Retry-After", "content": err},
        "504": {"description": "deadline cannot be met, or the decoder timed out", "content": err},
    }


def inference_openapi(task: str) -> dict[str, Any]:
    """The request body and responses of ``/classify`` or ``/embed``, for the modalities registered now."""
    example = _CLASSIFY_EXAMPLE if task == "classify" else _EMBED_EXAMPLE
    return {"requestBody": _body(), "responses": _responses(example)}


def describe_endpoint() -> str:
    return (
        f"Serves UniRepLKNet for {', '.join(list_adapters())}, each decoded into a C x H x W map "
        "and run in dynamic, shape-bucketed batches. Every response names the model and the weights that produced "
        "it (`random-init` is never hidden). Errors share one envelope: "
        '`{"error": {"code": ..., "message": ..., "details": ...}}`.\n\n'
        "```\ncurl -F file=@photo.jpg 'localhost:8000/classify/image?top_k=3'\n"
        "curl -F file=@clip.wav localhost:8000/embed/audio\n"
        "curl -H 'Content-Type: application/json' -d '{\"points\": [[0,0,1],[1,0,0],[0,1,0]]}' "
        "localhost:8000/classify/pointcloud\n```"
    )
