"""How formed batches reach the device workers: an interface, and the in-process implementation.

The batcher only talks to ``Transport``. The default, ``LocalTransport``, runs one device-worker thread per device
inside the gateway process (torch releases the GIL while it computes, so the event loop keeps serving).
``service.scaleout.stream_transport`` implements the same interface over Redis Streams: ``execute`` XADDs the
serialized batch to the model's stream and awaits the reply on the gateway's own stream; ``reserve`` bounds the
batches in flight per gateway; ``ready`` reflects whether live workers have announced themselves warm.

Contract:
- ``reserve()`` waits until a device slot is free (running + staged batches below the limit); every successful
  ``reserve`` is followed by exactly one ``execute`` (which frees the slot when done) or one ``release``.
- ``execute(batch)`` returns a ``BatchResult`` with one ``ItemResult`` per item, errors per item; it raises only
  when the whole batch could not be run at all (the batcher then fails those items with that error).
- ``idle()`` is True when no batch is reserved or running: the batcher then dispatches without waiting;
  ``can_start_now()`` is True when a reserved batch would run at once rather than wait staged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from servable.served import metrics_label
from service.runtime.work import Batch, BatchResult
from unirep_errors import ServiceUnavailableError

if TYPE_CHECKING:
    from servable.served import ServedModel
    from service.metrics import Metrics
    from service.runtime.device_worker import DeviceWorker
    from service.settings import ModalityConfig

log = logging.getLogger(__name__)


class Transport(ABC):
    runs_models: bool = True
    """Whether ``execute`` runs the forward pass in this process (then this process records the batch metrics).
    A remote transport's batches are recorded by the stream workers that run them, so no batch counts twice."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Every worker behind the transport is warm and accepting batches."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def reserve(self) -> None: ...

    @abstractmethod
    def release(self) -> None: ...

    @abstractmethod
    async def execute(self, batch: Batch) -> BatchResult: ...

    @abstractmethod
    def idle(self) -> bool: ...

    @abstractmethod
    async def stop(self) -> None: ...

    def can_start_now(self) -> bool:
        """A batch reserved now would start at once (a device is free), not wait staged behind a running one.

        Remote transports answer True: staging hides their round trip, so they keep forming batches ahead.
        """
        return True

    async def describe_models(
        self, configs: list[ModalityConfig], adapters: dict[str, Any]
    ) -> dict[str, ServedModel] | None:
        """Remote transports: the models their workers serve (the gateway loads none); None: load them here."""
        return None

    def unavailable_reason(self) -> str | None:
        """Why a started transport is not ready (Redis down, no live worker), for 503 messages; None when fine."""
        return None


class LocalTransport(Transport):
    """One thread per ``DeviceWorker`` pulling from a shared queue (an idle device takes the next batch)."""

    def __init__(self, workers: list[DeviceWorker], metrics: Metrics, prefetch: int = 1) -> None:
        if not workers:
            raise ValueError("LocalTransport needs at least one device worker")
        self.device_workers = workers
        self.metrics = metrics
        self.slots = len(workers) * (1 + prefetch)
        self._slots = asyncio.Semaphore(self.slots)
        self._reserved = 0
        self._queue: queue.Queue[tuple[Batch, asyncio.Future[BatchResult], asyncio.AbstractEventLoop] | None] = (
            queue.Queue()
        )
        self._threads: list[threading.Thread] = []
        self._ready = False
        self._stopped = False
        for worker in workers:
            follow_backend_switches(metrics, worker)

    @property
    def ready(self) -> bool:
        return self._ready and not self._stopped

    async def start(self) -> None:
        """Warm every worker (concurrently, one thread each: batch sizes 1 and the largest), then start their batch
        loops, which warm the other sizes while no batch waits."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, w.warmup, True) for w in self.device_workers))
        for worker in self.device_workers:
            self.metrics.worker_ready.labels(worker.device_name).set(1)
            thread = threading.Thread(target=self._loop, args=(worker,), name=f"unirep-worker-{worker.device_name}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        self._ready = True

    def _loop(self, worker: DeviceWorker) -> None:
        while True:
            try:  # batches first; a cold batch size is warmed only once the device has been quiet a while
                job = self._queue.get(timeout=worker.quiet_for())
            except queue.Empty:
                worker.warm_next()
                continue
            if job is None:
                self._queue.put(None)  # let the other workers see it too
                return
            batch, future, loop = job
            try:
                result = worker.execute(batch)
            except BaseException as exc:
                loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

    async def reserve(self) -> None:
        if self._stopped:
            raise ServiceUnavailableError("the workers have stopped", retry_after=1)
        await self._slots.acquire()
        self._reserved += 1

    def release(self) -> None:
        self._reserved -= 1
        self._slots.release()

    async def execute(self, batch: Batch) -> BatchResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self._queue.put((batch, future, loop))
        try:
            return await asyncio.shield(future)
        finally:
            self.release()

    def idle(self) -> bool:
        return self._reserved == 0

    def can_start_now(self) -> bool:
        return self._reserved < len(self.device_workers)

    async def stop(self) -> None:
        self._stopped = True
        self._ready = False
        self._queue.put(None)
        for worker in self.device_workers:
            worker.close()
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join, 30.0)
        for worker in self.device_workers:
            self.metrics.worker_ready.labels(worker.device_name).set(0)


def _set_result(future: asyncio.Future[BatchResult], result: BatchResult) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[BatchResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def follow_backend_switches(metrics: Metrics, worker: DeviceWorker) -> None:
    """``auto`` measured in the background and swapped a model's backend on ``worker``: ``unirep_backend_info``
    follows (in ``unirep serve`` and on scale-out workers alike)."""

    def switched(key: str, old: str, new: str) -> None:
        metrics.backend_info.labels(metrics_label(key), worker.device_name, old).set(0)
        metrics.backend_info.labels(metrics_label(key), worker.device_name, new).set(1)

    worker.on_switch = switched
