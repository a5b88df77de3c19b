"""``POST /classify/{modality}`` and ``POST /embed/{modality}``: one router, one request path for both tasks.

Auth, client identity, admission, deadline, body and accounting are the front door's (``service.http.intake``);
this module reads the payload, runs the inference and writes the answer. ``?preview=true`` draws the map from the
decode this request made (decoding it again would cost a second decoder and be charged to nobody).
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from modality_adapters import list_adapters
from servable.served import ServedModel
from service.http import request_io as io
from service.http.docs import inference_openapi
from service.http.intake import Admitted, Intake, http_door
from service.http.preview import Drawing
from service.http.schemas import ClassifyResponse, EmbedResponse, dump
from service.runtime.outcome import Outcome
from service.runtime.serving import ServiceRuntime
from service.runtime.work import Task

_RESPONSE_TYPES: dict[str, type[BaseModel]] = {"classify": ClassifyResponse, "embed": EmbedResponse}
_MODEL = Query(None, description="a loaded model of this modality (GET /models); default: the modality's default")
_VERSION = Query(None, description="the model's version (default: its highest loaded version)")


def inference_router() -> APIRouter:
    """The inference routes; built per app so that the docs list the modalities registered at that time."""
    router = APIRouter(tags=["inference"])
    names = ", ".join(list_adapters())
    enum = {"enum": list_adapters()}

    @router.post(
        "/classify/{modality}",
        openapi_extra=inference_openapi("classify"),
        response_model=ClassifyResponse,
        summary=f"Classify one input ({names})",
    )
    async def classify(
        request: Request,
        modality: str = Path(description="a registered modality", json_schema_extra=enum),
        top_k: int | None = Query(None, ge=1, description="number of predictions (default 5, at most num_classes)"),
        preview: bool = Query(False, description="also return the PNG of what the model sees, base64, as preview_png"),
        model: str | None = _MODEL,
        version: str | None = _VERSION,
    ) -> Response:
        return await _door(request, modality, "classify", top_k, preview, (model, version))

    @router.post(
        "/embed/{modality}",
        openapi_extra=inference_openapi("embed"),
        response_model=EmbedResponse,
        summary=f"The pooled, normalized UniRepLKNet embedding of one input ({names})",
    )
    async def embed(
        request: Request,
        modality: str = Path(description="a registered modality", json_schema_extra=enum),
        model: str | None = _MODEL,
        version: str | None = _VERSION,
    ) -> Response:
        return await _door(request, modality, "embed", None, False, (model, version))

    return router


async def _door(
    request: Request,
    modality: str,
    task: Task,
    top_k: int | None,
    preview: bool = False,
    named: tuple[str | None, str | None] = (None, None),
) -> Response:
    """``named``: the ``?model=`` and ``&version=`` that pick a loaded model of the modality (else its default)."""
    runtime: ServiceRuntime = request.app.state.runtime

    async def work(intake: Intake, admitted: Admitted, watch: io.DisconnectWatch) -> Response:
        return await _infer(runtime, request, admitted, watch, task, top_k, preview)

    return await http_door(
        request, task, modality, lambda: runtime.model_for(modality, *named), work, io.error_response
    )


async def _infer(
    runtime: ServiceRuntime,
    request: Request,
    admitted: Admitted,
    watch: io.DisconnectWatch,
    task: Task,
    top_k: int | None,
    preview: bool,
) -> Response:
    """The native door's own work: the payload, the inference (and the preview drawn from its decode), the answer."""
    started = time.perf_counter()
    served = admitted.served
    modality = served.modality
    io.check_single_query_params(request)
    payload = await io.extract_payload(request, admitted.body, modality)
    hints = io.decoder_hints(modality, payload)
    drawing = Drawing(runtime, modality, hints) if preview else None
    try:
        outcome = await runtime.infer(
            served.key,
            task,
            payload.data,
            top_k=top_k,
            timeout_ms=admitted.timeout_ms,
            cancelled=watch,
            hints=hints,
            client=admitted.client,
            on_decoded=drawing.start if drawing is not None else None,
        )
        preview_png = await drawing.png(payload.data, admitted) if drawing is not None else None
    finally:
        if drawing is not None:
            drawing.settle()
    content = _content(served, outcome, started, preview_png)
    body_out = dump(_RESPONSE_TYPES[task].model_validate(content))
    return JSONResponse(body_out, headers=_headers(outcome, io.request_id(request)))


def _content(served: ServedModel, outcome: Outcome, started: float, preview_png: bytes | None) -> dict[str, Any]:
    """The answer's body: which model and weights answered, the result, timings and batch size (and the preview)."""
    content = {"modality": served.modality, "model": served.name, "weights": served.weights.source, **outcome.result}
    content["timings"] = _timings(outcome, started)
    content["batch_size"] = outcome.batch_size
    if preview_png is not None:
        content["preview_png"] = base64.b64encode(preview_png).decode()
    return content


def _timings(outcome: Outcome, started: float) -> dict[str, float]:
    return {
        "queue_ms": round(outcome.queue_ms, 3),
        "preprocess_ms": round(outcome.preprocess_ms, 3),
        "inference_ms": round(outcome.inference_ms, 3),
        "total_ms": round((time.perf_counter() - started) * 1000.0, 3),
    }


def _headers(outcome: Outcome, rid: str) -> dict[str, str]:
    return {
        "X-Queue-Time-Ms": f"{outcome.queue_ms:.3f}",
        "X-Preprocess-Time-Ms": f"{outcome.preprocess_ms:.3f}",
        "X-Inference-Time-Ms": f"{outcome.inference_ms:.3f}",
        "X-Batch-Size": str(outcome.batch_size),
        "X-Cache": "hit" if outcome.cache_hit else "miss",
        io.REQUEST_ID_HEADER: rid,
    }
