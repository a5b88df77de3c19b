"""``unirep gateway`` and ``unirep worker``: the two halves of ``unirep serve``, connected through Redis Streams.

- ``gateway``: HTTP, auth, cache and preprocessing; no model. Its batches go to the model streams in Redis.
- ``worker``: the models on this host's devices (every visible GPU, or the CPU); no inference HTTP, only
  ``/healthz``, ``/readyz`` and ``/metrics`` on ``--port``. Run one per host (it uses all of that host's devices).

Both take the same settings as ``serve`` (flags > ``UNIREP_*`` > TOML) and need ``UNIREP_REDIS_URL``; gateways and
workers must agree on the model settings (the gateway checks the workers' model versions at startup). The model
repository lives in Redis: gateways take ``--model-repository``/``--model-control`` and publish it, workers load
what it routes (``service.scaleout.repository_sync``, ``service.scaleout.worker_repository``).
"""

from __future__ import annotations

import argparse
from typing import Any

from service.commands.settings_args import add_settings_arguments, settings_to_run


def add_parser(subparsers: Any) -> None:
    gateway = subparsers.add_parser(
        "gateway", help="HTTP gateway of a scale-out deployment: batches go to workers through Redis Streams"
    )
    add_settings_arguments(gateway, device=False, redis=True, repository=True)
    gateway.set_defaults(func=run_gateway)

    worker = subparsers.add_parser(
        "worker", help="scale-out worker: runs the models on this host's devices, reads batches from Redis Streams"
    )
    add_settings_arguments(worker, redis=True)
    worker.set_defaults(func=run_worker)


def run_gateway(args: argparse.Namespace) -> int:
    settings = settings_to_run(args, "gateway", need_redis=True)
    from service.http.server import run
    from service.metrics import Metrics
    from service.scaleout.stream_transport import RedisStreamsTransport

    metrics = Metrics()
    return run(settings, transport=RedisStreamsTransport(settings, metrics), metrics=metrics)


def run_worker(args: argparse.Namespace) -> int:
    settings = settings_to_run(args, "worker", need_redis=True, serves_grpc=False)  # its only port: health
    import logging
    import signal

    from service.http.server import configure_logging
    from service.metrics import Metrics
    from service.scaleout.stream_worker import StreamWorker
    from service.scaleout.worker_http import start_health_server

    configure_logging(settings.log_level)
    log = logging.getLogger("unirep.worker")
    metrics = Metrics()
    worker = StreamWorker(settings, metrics)
    if settings.model_repository:
        log.warning("a worker does not read --model-repository: it loads what the gateways publish to Redis")

    def readiness() -> str | None:
        if worker.stopping.is_set():
            return "draining"
        if not worker.ready:
            return "loading and warming models"
        return None if worker.health.up else worker.health.describe()

    def on_signal(sig: int, _frame: object) -> None:
        log.info("received %s: finishing the batches in hand, then leaving", signal.Signals(sig).name)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = start_health_server(settings.host, settings.port, metrics, readiness)
    try:
        worker.build()
        if not worker.stopping.is_set():
            worker.run()
    except Exception:
        log.exception("worker failed")
        return 1
    finally:
        server.shutdown()
    return 0
