"""``POST /preview/{modality}``: the PNG of the map the model sees for an upload (the image crop, the spectrogram,
the frame mosaic, the three depth views, the packed series window).

The body is read exactly as ``/classify`` reads it (multipart, raw, or JSON for series and clouds; the same size
limit, API key, admission and deadline); the upload is decoded in the same sandboxed decoder pool, then the
modality's adapter draws the map in a thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.http import request_io as io
from service.http.tracking import Tracked
from service.runtime.serving import ServiceRuntime
from unirep_errors import UnirepError

router = APIRouter(tags=["inference"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": {"error": {"code": c, "message": text}}}}}
    for code, c, text in (
        (401, "unauthorized", "missing or invalid API key (when API keys are on)"),
        (404, "not_found", "unknown or disabled modality"),
        (413, "input_too_large", "body over the size limit"),
        (415, "unsupported_media_type", "a file type this modality does not read"),
        (422, "undecodable_input", "the file cannot be decoded"),
        (503, "service_unavailable", "starting or draining (Retry-After)"),
        (504, "deadline_exceeded", "the deadline (X-Request-Timeout-Ms) passed"),
    )
}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "description": "The same bodies as /classify: multipart field `file`, the raw file, or JSON (series, clouds).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


async def draw(
    runtime: ServiceRuntime, modality: str, data: bytes, hints: dict[str, Any], timeout_ms: float | None
) -> tuple[bytes, float]:
    """Decode ``data`` in the decoder pool as classify would and draw the map: (PNG bytes, milliseconds)."""
    served = runtime.served_model(modality)
    params = {**served.params, **hints}
    timeout_ms = timeout_ms if timeout_ms is not None else runtime.settings.default_timeout_ms
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_ms / 1000.0 if timeout_ms is not None else None
    assert runtime.pool is not None
    decoded = await runtime.pool.decode(modality, data, params, deadline=deadline)
    adapter = runtime.adapters[modality]
    png: bytes = await asyncio.get_running_loop().run_in_executor(
        None, lambda: adapter.preview(decoded.tensor, **params)
    )
    return png, (time.perf_counter() - started) * 1000.0


async def render_preview(request: Request, runtime: ServiceRuntime, modality: str) -> tuple[bytes, float]:
    """The request's upload, read exactly as classify reads it, drawn."""
    auth = getattr(request.app.state, "auth", None)
    if auth is not None:
        await auth.authorize(request.headers.get("authorization"))
    runtime.served_model(modality)
    runtime.check_admission()
    timeout_ms = io.parse_timeout_ms(request)
    body = await io.read_body(request, runtime.settings.max_body_bytes)
    payload = await io.extract_payload(request, body, modality)
    return await draw(runtime, modality, payload.data, io.decoder_hints(modality, payload), timeout_ms)


@router.post(
    "/preview/{modality}",
    summary="The PNG of what the model sees for an upload",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the map, drawn"}, **_ERRORS},
    openapi_extra=_OPENAPI,
)
async def preview(request: Request, modality: str) -> Response:
    runtime: ServiceRuntime = request.app.state.runtime
    rid = io.request_id(request)
    with Tracked(runtime, modality, "preview") as tracked:
        try:
            png, elapsed_ms = await render_preview(request, runtime, modality)
        except UnirepError as exc:
            tracked.status = exc.status_code
            return io.error_response(exc, rid)
        tracked.status = 200
    headers = {io.REQUEST_ID_HEADER: rid, "X-Preprocess-Time-Ms": f"{elapsed_ms:.3f}"}
    return Response(png, media_type="image/png", headers=headers)
