"""``POST /classify/{modality}`` and ``POST /embed/{modality}``: one router, one request path for both tasks.

The API-key check runs inside the request path rather than as a route dependency so that a refused request is
still counted in the request metrics with its status, like every other error.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from modality_adapters import list_adapters
from servable.served import ServedModel
from service.http import deps
from service.http import request_io as io
from service.http.docs import inference_openapi
from service.http.preview import draw
from service.http.schemas import ClassifyResponse, EmbedResponse, dump
from service.metrics import Metrics
from service.runtime.outcome import Outcome
from service.runtime.serving import ServiceRuntime
from service.runtime.work import Task
from service.settings import ServiceSettings
from unirep_errors import UnirepError

log = logging.getLogger(__name__)

_RESPONSE_TYPES: dict[str, type[BaseModel]] = {"classify": ClassifyResponse, "embed": EmbedResponse}
_MODEL = Query(None, description="a loaded model of this modality (GET /models); default: the modality's default")
_VERSION = Query(None, description="the model's version (default: its highest loaded version)")


class _Context:
    """The dependencies one inference request uses, resolved by FastAPI."""

    def __init__(
        self,
        runtime: Annotated[ServiceRuntime, Depends(deps.runtime)],
        metrics: Annotated[Metrics, Depends(deps.metrics)],
        settings: Annotated[ServiceSettings, Depends(deps.settings)],
        auth: Annotated[Any, Depends(deps.auth)],
    ) -> None:
        self.runtime, self.metrics, self.settings, self.auth = runtime, metrics, settings, auth


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
        ctx: Annotated[_Context, Depends()],
        modality: str = Path(description="a registered modality", json_schema_extra=enum),
        top_k: int | None = Query(None, ge=1, description="number of predictions (default 5, at most num_classes)"),
        preview: bool = Query(False, description="also return the PNG of what the model sees, base64, as preview_png"),
        model: str | None = _MODEL,
        version: str | None = _VERSION,
    ) -> Response:
        return await _infer(ctx, request, modality, "classify", top_k, preview, (model, version))

    @router.post(
        "/embed/{modality}",
        openapi_extra=inference_openapi("embed"),
        response_model=EmbedResponse,
        summary=f"The pooled, normalized UniRepLKNet embedding of one input ({names})",
    )
    async def embed(
        request: Request,
        ctx: Annotated[_Context, Depends()],
        modality: str = Path(description="a registered modality", json_schema_extra=enum),
        model: str | None = _MODEL,
        version: str | None = _VERSION,
    ) -> Response:
        return await _infer(ctx, request, modality, "embed", None, False, (model, version))

    return router


async def _infer(
    ctx: _Context,
    request: Request,
    modality: str,
    task: Task,
    top_k: int | None,
    preview: bool = False,
    named: tuple[str | None, str | None] = (None, None),
) -> Response:
    started = time.perf_counter()
    rid = io.request_id(request)
    runtime, metrics = ctx.runtime, ctx.metrics
    metrics.in_flight.inc()
    runtime.in_flight += 1
    watch: io.DisconnectWatch | None = None
    drawing: asyncio.Task[tuple[bytes, float]] | None = None
    status = 500
    try:
        client = await _client_identity(ctx, request)
        served = runtime.model_for(modality, *named)
        runtime.check_admission()
        runtime.check_client(client)
        io.check_single_query_params(request)
        timeout_ms = io.parse_timeout_ms(request)
        body = await io.read_body(request, ctx.settings.max_body_bytes)
        payload = await io.extract_payload(request, body, modality)
        watch = io.DisconnectWatch(request.receive)
        if preview:  # drawn beside the inference, from its own decode (a cache hit has no map to draw)
            hints = io.decoder_hints(modality, payload)
            drawing = asyncio.create_task(draw(runtime, modality, payload.data, hints, timeout_ms))
        outcome = await runtime.infer(
            served.key,
            task,
            payload.data,
            top_k=top_k,
            timeout_ms=timeout_ms,
            cancelled=watch,
            hints=io.decoder_hints(modality, payload),
            client=client,
        )
        preview_png = (await drawing)[0] if drawing is not None else None
        content = _content(served, outcome, started, preview_png)
        status = 200
        body_out = dump(_RESPONSE_TYPES[task].model_validate(content))
        return JSONResponse(body_out, headers=_headers(outcome, rid))
    except ClientDisconnect:  # the client hung up (or stalled) mid-upload: its own outcome, not a server error
        status = 499
        log.debug("request %s: the client disconnected before its body arrived", rid)
        return io.envelope(499, {"code": "client_disconnected", "message": "the client disconnected"}, rid)
    except UnirepError as exc:
        status = exc.status_code
        if status >= 500 and exc.code == "internal_error":
            log.error("request %s failed: %s", rid, exc.message)
        return io.error_response(exc, rid)
    except Exception:
        log.exception("request %s failed unexpectedly", rid)
        return io.envelope(500, {"code": "internal_error", "message": "internal error; see the server log"}, rid)
    finally:
        _settle(drawing)
        if watch is not None:
            status = 499 if watch.gone and status != 200 else status
            watch.close()
        metrics.in_flight.dec()
        runtime.in_flight -= 1
        label = modality if modality in list_adapters() else "unknown"
        metrics.requests.labels(label, task, str(status)).inc()
        metrics.request_duration.labels(label, task).observe(time.perf_counter() - started)


async def _client_identity(ctx: _Context, request: Request) -> str:
    """Whom the per-client decoder budgets charge: the API key when keys are on (checked here), else the address."""
    if ctx.auth is not None:
        return "key:" + await ctx.auth.authorize(request.headers.get("authorization"))
    return f"addr:{request.client.host}" if request.client else "anonymous"


def _content(served: ServedModel, outcome: Outcome, started: float, preview_png: bytes | None) -> dict[str, Any]:
    """The answer's body: which model and weights answered, the result, timings and batch size (and the preview)."""
    content = {"modality": served.modality, "model": served.name, "weights": served.weights.source, **outcome.result}
    content["timings"] = _timings(outcome, started)
    content["batch_size"] = outcome.batch_size
    if preview_png is not None:
        content["preview_png"] = base64.b64encode(preview_png).decode()
    return content


def _settle(drawing: asyncio.Task[tuple[bytes, float]] | None) -> None:
    """Cancel a preview still drawing, or retrieve its error so that a failed drawing is not logged twice."""
    if drawing is not None and not drawing.done():
        drawing.cancel()
    elif drawing is not None and not drawing.cancelled():
        drawing.exception()


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
