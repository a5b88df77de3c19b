"""The scale-out worker's only HTTP: ``/healthz``, ``/readyz`` and ``/metrics`` (no inference routes).

Orchestrators probe it (the compose healthcheck) and Prometheus scrapes it (``deploy/prometheus``); a standard
library server in a thread is enough for that, and keeps FastAPI and uvicorn out of the worker.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service.http.security_headers import COMMON, DATA_POLICY
from service.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


def start_health_server(
    host: str, port: int, metrics: Metrics, readiness: Callable[[], str | None]
) -> ThreadingHTTPServer:
    """Serve in a daemon thread; ``readiness()`` returns None when ready, else why not (503)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, "application/json", json.dumps({"status": "ok"}).encode())
            elif path == "/readyz":
                reason = readiness()
                body = {"status": "ready"} if reason is None else {"status": "not_ready", "reason": reason}
                self._send(200 if reason is None else 503, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE, metrics.render())
            else:
                self._send(404, "application/json", b'{"error":{"code":"not_found","message":"no such route"}}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in {**COMMON, "content-security-policy": DATA_POLICY}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="unirep-health", daemon=True).start()
    return server
