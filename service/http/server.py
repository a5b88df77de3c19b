"""Running the app under uvicorn with a graceful drain: the first SIGTERM (or Ctrl-C) turns readiness off and
refuses new requests with 503, waits until every admitted request has its answer (at most ``drain_timeout_s``),
and only then lets uvicorn close the sockets and stop the workers. A second Ctrl-C forces the exit.

uvicorn's own handling would stop accepting connections at once, so a load balancer would see refused
connections instead of a failing readiness probe, and queued items would be cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn

from service.http.app import create_app
from service.http.guarded_protocol import ConnectionLimits, protocol_class
from service.runtime.serving import ServiceRuntime
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: ServiceRuntime, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)  # type: ignore[arg-type]

    async def on_tick(self, counter: int) -> bool:
        if self.runtime.state == "failed":  # a model that cannot load: exit (non-zero) rather than idle unready
            log.error("startup failed (%s); exiting", self.runtime.error)
            return True
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self._loop is None:
            if sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        log.info("received %s: draining (at most %.0f s)", signal.Signals(sig).name, self.drain_timeout_s)
        self.runtime.begin_drain()
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        done = await self.runtime.drain(self.drain_timeout_s)
        if done:
            log.info("drained: every admitted request was answered")
        else:
            log.warning("drain timeout: %d request(s) still in flight", self.runtime.in_flight)
        self.should_exit = True


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True)


def connection_limits(settings: ServiceSettings) -> ConnectionLimits:
    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        body_idle_timeout_s=settings.body_idle_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
    )


def run(settings: ServiceSettings, **app_parts: Any) -> int:
    """Serve until SIGTERM; ``app_parts`` go to ``create_app`` (``unirep gateway`` passes its Streams transport)."""
    configure_logging(settings.log_level)
    app = create_app(settings, **app_parts)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        lifespan="on",
        http=protocol_class(connection_limits(settings)),
        ws="none",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )
    server = DrainingServer(config, app.state.runtime, settings.drain_timeout_s)
    server.run()
    return 1 if app.state.runtime.error is not None else 0
