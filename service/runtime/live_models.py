"""Adding a model to a serving runtime and releasing one, without failing a request.

``install`` takes a built ``ServedModel`` and, off the request path, places it on every device worker (its backend
exported or loaded from the export cache and checked against the module), warms its bucket, gives it a batcher
bucket seeded with the measured latencies, and only then routes it: the switch is one assignment in the model
table. ``release`` is the other end: a model no longer routed stays loaded while any request that resolved to it
is inside the runtime or its items are queued or running, and for ``linger_s`` of quiet after that (a request
that resolved it just before the switch may still be reading its body); then its bucket stops and the workers drop
it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from servable.served import ServedModel, metrics_label
from service.runtime.admission import latency_seeds
from service.runtime.bucket import BatchPolicy
from unirep_errors import ServiceUnavailableError

if TYPE_CHECKING:
    from service.runtime.serving import ServiceRuntime

log = logging.getLogger(__name__)

RELEASE_LINGER_S = 2.0
"""Quiet time (no request of the model inside the runtime) before a replaced or unloaded model is released."""


def device_workers(runtime: ServiceRuntime) -> list[Any]:
    """The runtime's in-process device workers; a gateway whose models run elsewhere has none to load into."""
    workers = list(getattr(runtime.transport, "device_workers", []))
    if not workers:
        raise ServiceUnavailableError(
            "this process runs no models (its batches go to stream workers): load models where they run", retry_after=5
        )
    return workers


def record_backends(served: ServedModel, workers: list[Any], metrics: Any) -> None:
    """What each device runs ``served`` on: into the model (``/models``) and the ``backend_info`` metric."""
    for worker in workers:
        choice = worker.backends[served.key]
        served.record_backend(worker.device_name, choice.name, choice.reason)
        metrics.backend_info.labels(metrics_label(served.key), worker.device_name, choice.name).set(1)


def place(workers: list[Any], served: ServedModel, background: bool = True) -> None:
    """Blocking: install and warm on every device (a failure leaves none of them holding the model);
    ``background``: the sizes beyond 1 and the largest are warmed later, between batches."""
    try:
        for worker in workers:
            worker.install(served.key, served)
            worker.warm(served.key, background=background)
    except BaseException:
        for worker in workers:
            worker.uninstall(served.key)
        raise


async def install(runtime: ServiceRuntime, served: ServedModel) -> ServedModel | None:
    """Place, warm and route ``served``; returns the model it replaced (already being released), if any."""
    workers = device_workers(runtime)
    assert runtime.batcher is not None
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, place, workers, served)
    record_backends(served, workers, runtime.metrics)
    cfg = served.config
    policy = BatchPolicy(cfg.max_batch_size, cfg.max_delay_ms, cfg.max_queue_size)
    runtime.served[served.key] = served
    seeds = latency_seeds(served, workers, runtime.settings.warmup)
    runtime.batcher.add_model(served.key, policy, served.input_shape, seeds)
    replaced = runtime.table.route(served)
    log.info(
        "loaded %s version %s (%s, %s) in %.1f s",
        served.model_name,
        served.model_version,
        served.weights.source,
        served.backend,
        time.perf_counter() - started,
    )
    if replaced is not None:
        schedule_release(runtime, replaced)
    return replaced


def schedule_release(runtime: ServiceRuntime, served: ServedModel, linger_s: float = RELEASE_LINGER_S) -> None:
    """Release ``served`` in the background once drained (see the module docstring)."""
    task = asyncio.create_task(release(runtime, served, linger_s), name=f"release-{served.key}")
    runtime.releasing.add(task)
    task.add_done_callback(runtime.releasing.discard)


async def release(runtime: ServiceRuntime, served: ServedModel, linger_s: float = RELEASE_LINGER_S) -> None:
    key = served.key
    if any(sm is served for sm in runtime.table.all()):
        return  # routed again meanwhile
    quiet_since: float | None = None
    while True:
        busy = runtime.users[key] > 0 or (runtime.batcher is not None and runtime.batcher.holds(key))
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= linger_s:
            break
        await asyncio.sleep(0.05)
    if runtime.batcher is not None:
        await runtime.batcher.remove_model(key)
    for worker in getattr(runtime.transport, "device_workers", []):
        worker.uninstall(key)
    runtime.served.pop(key, None)
    runtime.users.pop(key, None)
    log.info("released %s version %s (%s)", served.model_name, served.model_version, key)
