"""The OpenAPI document a code generator can use: FastAPI's schema, completed with what it cannot see.

FastAPI documents what a handler declares; the gateway reads its bodies and headers itself and answers errors from
exception handlers, so this adds, on every route that has them: the real error envelope (one schema, one example
per status with that status's own code) instead of FastAPI's ``HTTPValidationError``; the request headers
(``X-Request-Timeout-Ms``, ``X-Request-Id``); the response headers (timings, ``X-Cache``, ``X-Request-Id``,
``Retry-After``); 401 and a bearer security scheme when API keys are on; the modality (and V2 model) enum; and
the 503 of ``/readyz``. The V2 routes keep the protocol's own ``{"error": "..."}`` body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from modality_adapters import list_adapters
from service.http.v2_core import MODEL_VERSION
from service.settings import ServiceSettings

ERROR_ENVELOPE: dict[str, Any] = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable machine-readable code"},
                "message": {"type": "string", "description": "what went wrong and what to do"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
EXAMPLES: dict[str, tuple[str, str]] = {
    "400": ("bad_request", "the request is malformed"),
    "401": ("unauthorized", "missing API key: send Authorization: Bearer <key>"),
    "404": ("not_found", "unknown modality 'hologram'; use one of image, audio, video, pointcloud, timeseries"),
    "405": ("method_not_allowed", "GET is not allowed on /classify/image; see /docs"),
    "408": ("request_timeout", "the request body stalled; the connection is closed"),
    "413": ("input_too_large", "the body is 90000000 bytes; the limit is 67108864"),
    "415": ("unsupported_media_type", "not an image format PIL can read (JPEG, PNG, WebP, ...)"),
    "422": ("undecodable_input", "the image payload is empty"),
    "429": ("queue_full", "the image queue is full (256 waiting); retry after 1 s"),
    "431": ("headers_too_large", "the request head is over 65536 bytes; the connection is closed"),
    "500": ("internal_error", "internal error; see the server log"),
    "503": ("service_unavailable", "the service is starting (loading and warming models)"),
    "504": ("deadline_exceeded", "the request's deadline passed while decoding; nothing reached the model"),
}
REQUEST_HEADERS = [
    {
        "name": "X-Request-Timeout-Ms",
        "in": "header",
        "required": False,
        "description": "deadline in milliseconds; 504 when it cannot be met",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
    {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "echoed on the response (a new one is made when absent)",
        "schema": {"type": "string", "maxLength": 128},
    },
]
_MS = {"schema": {"type": "number"}}
RESULT_HEADERS = {
    "X-Queue-Time-Ms": {"description": "time in the batch queue", **_MS},
    "X-Preprocess-Time-Ms": {"description": "decode time", **_MS},
    "X-Inference-Time-Ms": {"description": "model time of the batch", **_MS},
    "X-Batch-Size": {"description": "items in the batch that ran", "schema": {"type": "integer"}},
    "X-Cache": {"description": "hit or miss", "schema": {"type": "string", "enum": ["hit", "miss"]}},
}
REQUEST_ID = {"X-Request-Id": {"description": "the request's id", "schema": {"type": "string"}}}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
INFERENCE_PREFIXES = ("/classify/", "/embed/", "/preview/", "/v2/models/")


def install(app: FastAPI, settings: ServiceSettings) -> None:
    """Replace ``app.openapi`` with the completed document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            complete(schema, settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any], settings: ServiceSettings) -> None:
    enabled = {cfg.modality for cfg in settings.modalities()}
    modalities = [m for m in list_adapters() if m in enabled]
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ERROR_ENVELOPE
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if settings.auth_enabled:
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key from `unirep keys create`"}
        }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict):
                _operation(path, method, operation, modalities, settings.auth_enabled)


def _operation(path: str, method: str, op: dict[str, Any], modalities: list[str], auth: bool) -> None:
    inference = path.startswith(INFERENCE_PREFIXES) and method == "post"
    v2 = path.startswith("/v2")
    for param in op.get("parameters", []):
        if param.get("in") == "path" and param.get("name") in ("modality", "model"):
            param["schema"] = {"type": "string", "enum": modalities, "title": param["name"]}
        elif param.get("in") == "path" and param.get("name") == "version":
            param["schema"] = {"type": "string", "enum": [MODEL_VERSION], "title": "version"}
    responses: dict[str, Any] = op.setdefault("responses", {})
    if inference:
        names = {p.get("name") for p in op.get("parameters", [])}
        op.setdefault("parameters", []).extend(h for h in REQUEST_HEADERS if h["name"] not in names)
        for status in ("429", "503"):
            responses.setdefault(status, {"description": EXAMPLES[status][1]})
        if auth:
            op["security"] = [{"bearer": []}]
            responses.setdefault("401", {"description": "missing or invalid API key"})
    if path == "/readyz":
        responses["503"] = {
            "description": "starting, draining, failed or unavailable (Retry-After)",
            "content": {"application/json": {"schema": _READYZ_503}},
        }
    for status, response in responses.items():
        if status == "200" and inference:
            headers = {**REQUEST_ID, **(RESULT_HEADERS if not path.startswith(("/preview/", "/v2/")) else {})}
            response.setdefault("headers", {}).update(headers)
        if status in ("429", "503"):
            response.setdefault("headers", {}).update(RETRY_AFTER)
        if status[0] in "45" and not v2 and path != "/readyz":
            code, message = EXAMPLES.get(status, ("http_error", response.get("description", "error")))
            response["content"] = {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorEnvelope"},
                    "example": {"error": {"code": code, "message": message}},
                }
            }
        elif status[0] in "45" and v2:
            response["content"] = {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/V2Error"},
                    "example": {"error": EXAMPLES.get(status, ("", "error"))[1]},
                }
            }


_READYZ_503 = {
    "type": "object",
    "required": ["status", "error"],
    "properties": {
        "status": {"type": "string", "enum": ["starting", "draining", "failed", "stopped", "unavailable"]},
        "error": ERROR_ENVELOPE["properties"]["error"],
    },
}
