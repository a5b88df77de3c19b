"""The HTTP gateway: ``create_app(settings)`` builds the FastAPI app around one ``ServiceRuntime``.

The app answers ``/healthz`` as soon as it runs; models load and warm in the background, and ``/readyz`` (and the
inference routes) report 503 until every bucket is warm, and again while draining. Issue 5 plugs in here:
``create_app(settings, cache=RedisCache(...), transport=RedisStreamsTransport(...))``; API keys belong in a
dependency on the inference routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.http import docs_ui, openapi, page, preview, v2_core, v2_rest
from service.http import request_io as io
from service.http.docs import INFERENCE_OPENAPI, describe_endpoint
from service.metrics import CONTENT_TYPE, Metrics
from service.runtime.cache import ResultCache
from service.runtime.serving import ServiceRuntime
from service.runtime.transport import Transport
from service.runtime.work import Task
from service.settings import MODALITIES, ServiceSettings
from unirep_errors import UnirepError

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "input_too_large", 415: "unsupported_media_type"}


def create_app(
    settings: ServiceSettings,
    *,
    cache: ResultCache | None = None,
    transport: Transport | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    metrics = metrics or Metrics()
    redis_parts = None
    if settings.redis_url:  # the shared cache and API keys (issue 5); the scale-out transport comes from its command
        from service.scaleout.setup import redis_services

        redis_parts = redis_services(settings, metrics, want_cache=cache is None)
        cache = cache or redis_parts.cache
    auth = redis_parts.auth if redis_parts is not None else None
    runtime = ServiceRuntime(settings, metrics, cache=cache, transport=transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        startup = asyncio.create_task(runtime.start(), name="unirep-startup")
        app.state.startup_task = startup
        try:
            async with v2_core.grpc_front(runtime, auth):
                yield
        finally:
            if not startup.done():
                startup.cancel()
            with contextlib.suppress(BaseException):
                await startup
            await runtime.stop()
            if redis_parts is not None:
                await redis_parts.close()

    app = FastAPI(
        title="UniRepLKNet perception service",
        version="0.1.0",
        description=describe_endpoint(),
        lifespan=lifespan,
        docs_url=None,  # served from local assets by service.http.docs_ui
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.auth = auth
    _install_error_handlers(app)

    async def infer(request: Request, modality: str, task: Task, top_k: int | None) -> Response:
        started = time.perf_counter()
        rid = io.request_id(request)
        metrics.in_flight.inc()
        runtime.in_flight += 1
        label = modality if modality in MODALITIES else "unknown"
        watch: io.DisconnectWatch | None = None
        status = 500
        try:
            if auth is not None:
                await auth.authorize(request.headers.get("authorization"))
            served = runtime.served_model(modality)
            runtime.check_admission()
            timeout_ms = io.parse_timeout_ms(request)
            body = await io.read_body(request, settings.max_body_bytes)
            payload = await io.extract_payload(request, body, modality)
            watch = io.DisconnectWatch(request.receive)
            outcome = await runtime.infer(
                modality,
                task,
                payload.data,
                top_k=top_k,
                timeout_ms=timeout_ms,
                cancelled=watch,
                hints=io.decoder_hints(modality, payload),
            )
            total_ms = (time.perf_counter() - started) * 1000.0
            content: dict[str, Any] = {"modality": modality, "model": served.name, "weights": served.weights.source}
            content.update(outcome.result)
            content["timings"] = {
                "queue_ms": round(outcome.queue_ms, 3),
                "preprocess_ms": round(outcome.preprocess_ms, 3),
                "inference_ms": round(outcome.inference_ms, 3),
                "total_ms": round(total_ms, 3),
            }
            content["batch_size"] = outcome.batch_size
            status = 200
            return JSONResponse(
                content,
                headers={
                    "X-Queue-Time-Ms": f"{outcome.queue_ms:.3f}",
                    "X-Preprocess-Time-Ms": f"{outcome.preprocess_ms:.3f}",
                    "X-Inference-Time-Ms": f"{outcome.inference_ms:.3f}",
                    "X-Batch-Size": str(outcome.batch_size),
                    "X-Cache": "hit" if outcome.cache_hit else "miss",
                    io.REQUEST_ID_HEADER: rid,
                },
            )
        except UnirepError as exc:
            status = exc.status_code
            if status >= 500 and exc.code == "internal_error":
                log.error("request %s failed: %s", rid, exc.message)
            return io.error_response(exc, rid)
        except Exception:
            log.exception("request %s failed unexpectedly", rid)
            return io.envelope(500, {"code": "internal_error", "message": "internal error; see the server log"}, rid)
        finally:
            if watch is not None:
                watch.close()
            metrics.in_flight.dec()
            runtime.in_flight -= 1
            metrics.requests.labels(label, task, str(status)).inc()
            metrics.request_duration.labels(label, task).observe(time.perf_counter() - started)

    @app.post(
        "/classify/{modality}",
        tags=["inference"],
        openapi_extra=INFERENCE_OPENAPI["classify"],
        summary="Classify one image, audio clip, video, point cloud or time series",
    )
    async def classify(
        request: Request,
        modality: str,
        top_k: int | None = Query(None, ge=1, description="number of predictions (default 5, at most num_classes)"),
    ) -> Response:
        return await infer(request, modality, "classify", top_k)

    @app.post(
        "/embed/{modality}",
        tags=["inference"],
        openapi_extra=INFERENCE_OPENAPI["embed"],
        summary="The pooled, normalized UniRepLKNet embedding of one input",
    )
    async def embed(request: Request, modality: str) -> Response:
        return await infer(request, modality, "embed", None)

    @app.get("/models", tags=["service"], summary="What each modality is served by, and with which weights")
    async def list_models() -> dict[str, Any]:
        return {"models": runtime.describe_models()}

    @app.get("/healthz", tags=["service"], summary="Liveness: the process is up and its event loop answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Readiness: every bucket is warm and the service is not draining")
    async def readyz() -> Response:
        if runtime.ready:
            return JSONResponse({"status": "ready"})
        state = runtime.state if runtime.state != "ready" else "starting"
        reason = runtime.transport.unavailable_reason() if runtime.transport is not None else None
        if runtime.state == "ready" and reason is not None:
            state = "unavailable"
        message = {
            "starting": "loading and warming models",
            "draining": "draining: finishing admitted requests before exit",
            "failed": f"startup failed: {runtime.error}",
            "stopped": "stopped",
            "unavailable": reason,
        }.get(state, state)
        error = {"code": "service_unavailable", "message": message}
        return JSONResponse({"status": state, "error": error}, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics (text exposition format)")
    async def prometheus_metrics() -> Response:
        for worker in getattr(runtime.transport, "workers", []):
            stats = worker.memory_stats()
            if stats is not None:
                metrics.gpu_memory_allocated.labels(worker.device_name).set(stats[0])
                metrics.gpu_memory_max_allocated.labels(worker.device_name).set(stats[1])
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(v2_rest.router)
    app.include_router(preview.router)
    app.include_router(page.router)
    app.include_router(docs_ui.router)
    openapi.install(app, settings)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error, including the framework's own (404, 405, validation), leaves in the one envelope."""

    @app.exception_handler(UnirepError)
    async def _unirep(request: Request, exc: UnirepError) -> Response:
        return io.error_response(exc, io.request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs for the endpoints"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        response = io.envelope(exc.status_code, {"code": code, "message": message}, io.request_id(request))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
        return io.envelope(
            422,
            {"code": "validation_error", "message": message, "details": {"errors": problems}},
            io.request_id(request),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return io.envelope(
            500, {"code": "internal_error", "message": "internal error; see the server log"}, io.request_id(request)
        )
