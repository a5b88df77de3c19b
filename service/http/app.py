"""The HTTP gateway: ``create_app(settings)`` builds the FastAPI app around one ``ServiceRuntime``.

The app answers ``/healthz`` as soon as it runs; models load and warm in the background, and ``/readyz`` (and the
inference routes) report 503 until every bucket is warm, and again while draining. Routes live in routers
(``inference``, ``ops``) that reach the runtime through dependencies (``deps``); scale-out passes its own
transport: ``create_app(settings, transport=RedisStreamsTransport(...))``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.http import docs_ui, openapi, page, preview, v2_core, v2_repository, v2_rest
from service.http.client_identity import ClientIdentity
from service.http.docs import describe_endpoint
from service.http.errors import install_error_handlers
from service.http.inference import inference_router
from service.http.ops import router as ops_router
from service.http.security_headers import SecurityHeaders
from service.metrics import Metrics
from service.runtime.cache import ResultCache
from service.runtime.serving import ServiceRuntime
from service.runtime.transport import Transport
from service.settings import ServiceSettings


def create_app(
    settings: ServiceSettings,
    *,
    cache: ResultCache | None = None,
    transport: Transport | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    metrics = metrics or Metrics()
    redis_parts = None
    if settings.redis_url:  # the shared cache and API keys; the scale-out transport comes from its command
        from service.scaleout.setup import redis_services

        redis_parts = redis_services(settings, metrics, want_cache=cache is None)
        cache = cache or redis_parts.cache
    runtime = ServiceRuntime(settings, metrics, cache=cache, transport=transport)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        startup = asyncio.create_task(runtime.start(), name="unirep-startup")
        app.state.startup_task = startup
        try:
            async with v2_core.grpc_front(runtime, app.state.auth, app.state.identity):
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
    app.state.auth = redis_parts.auth if redis_parts is not None else None
    app.state.identity = ClientIdentity(settings.trusted_proxies, settings.forwarded_header)
    install_error_handlers(app)
    app.add_middleware(SecurityHeaders)

    app.include_router(inference_router())
    app.include_router(ops_router)
    app.include_router(v2_rest.router)
    app.include_router(v2_repository.router)
    app.include_router(preview.router)
    app.include_router(page.router)
    app.include_router(docs_ui.router)
    openapi.install(app, settings)
    return app
