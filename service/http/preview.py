"""``POST /preview/{modality}``: the PNG of the map the model sees for an upload (the image crop, the spectrogram,
the frame mosaic, the three depth views, the packed series window).

The request comes through the same front door as ``/classify`` (``service.http.intake``: API key, client,
admission, deadline, body) and its payload is read the same way (multipart, raw, or JSON for series and clouds);
the upload is decoded in the same sandboxed decoder pool, charged to its client, then the modality's adapter
draws the map in a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.http import request_io as io
from service.http.intake import Admitted, Intake, http_door
from service.runtime.serving import ServiceRuntime
from unirep_errors import ClientDisconnectedError

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


class Drawing:
    """The map of one upload, drawn in a thread from a decode; the decode is the inference's own when there was
    one (``start`` is its ``on_decoded`` hook), else made here in the decoder pool, charged to the same client."""

    def __init__(self, runtime: ServiceRuntime, modality: str, hints: dict[str, Any]) -> None:
        self.runtime = runtime
        self.modality = modality
        self.params = {**runtime.served_model(modality).params, **hints}
        self.task: asyncio.Task[bytes] | None = None

    def start(self, tensor: torch.Tensor) -> None:
        adapter = self.runtime.adapters[self.modality]
        loop = asyncio.get_running_loop()
        self.task = asyncio.ensure_future(loop.run_in_executor(None, lambda: adapter.preview(tensor, **self.params)))

    async def png(self, data: bytes, admitted: Admitted, gone: Callable[[], bool] = lambda: False) -> bytes:
        """The PNG; decodes ``data`` first when no decode was handed over (a cached result has none)."""
        if self.task is None:
            if gone():
                raise ClientDisconnectedError("the client disconnected before its preview was drawn")
            timeout_ms = admitted.timeout_ms or self.runtime.settings.default_timeout_ms
            deadline = time.monotonic() + timeout_ms / 1000.0 if timeout_ms is not None else None
            assert self.runtime.pool is not None
            decoded = await self.runtime.pool.decode(
                self.modality, data, self.params, deadline=deadline, client=admitted.client
            )
            self.start(decoded.tensor)
        assert self.task is not None
        return await self.task

    def settle(self) -> None:
        """Cancel a drawing nobody will read, or retrieve its error so that a failure is not logged twice."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif self.task is not None and not self.task.cancelled():
            self.task.exception()


@router.post(
    "/preview/{modality}",
    summary="The PNG of what the model sees for an upload",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the map, drawn"}, **_ERRORS},
    openapi_extra=_OPENAPI,
)
async def preview(request: Request, modality: str) -> Response:
    runtime: ServiceRuntime = request.app.state.runtime

    async def work(intake: Intake, admitted: Admitted, watch: io.DisconnectWatch) -> Response:
        started = time.perf_counter()
        payload = await io.extract_payload(request, admitted.body, modality)
        drawing = Drawing(runtime, modality, io.decoder_hints(modality, payload))
        try:
            png = await drawing.png(payload.data, admitted, watch)
        finally:
            drawing.settle()
        if watch.gone:
            raise ClientDisconnectedError("the client disconnected before its preview was sent")
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        headers = {io.REQUEST_ID_HEADER: io.request_id(request), "X-Preprocess-Time-Ms": f"{elapsed_ms:.3f}"}
        return Response(png, media_type="image/png", headers=headers)

    return await http_door(
        request, "preview", modality, lambda: runtime.served_model(modality), work, io.error_response
    )
