"""The gateway side of scale-out: a ``Transport`` over Redis Streams (``unirep gateway``).

The batcher forms batches exactly as in ``unirep serve``; ``execute`` XADDs each one (``service.scaleout.codec``:
JSON header + raw float32 tensors) to its model's stream, ``<ns>:stream:<modality>``, and awaits the reply that a
worker XADDs to this gateway's own stream, ``<ns>:reply:<gateway id>``, which one task reads (XREAD BLOCK) and
routes to the waiting batch by id. A reply for a batch that is no longer waited for (already answered, or given up)
is dropped and counted, so every request is answered once.

Never hanging: a batch waits at most until its earliest deadline (then 503); when Redis fails, or when no live
worker serves the batch's modality any more (heartbeats older than ``worker_ttl_s``), waiting batches fail at once
with 503, and ``ready`` turns false so that new requests get 503 at admission, with the reason, until Redis and a
worker are back. The gateway holds no model: ``describe_models`` builds the served models' descriptions (labels,
input shape, version for the cache key) from the workers' announcements. A repository version has a stream of its
own, named by its serving key (``<ns>:stream:pets/2#7``); ``make_repository`` gives the repository kept in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from servable.served import ServedModel
from service.metrics import Metrics
from service.runtime.transport import Transport
from service.runtime.work import Batch, BatchResult
from service.scaleout.codec import decode_result, encode_batch
from service.scaleout.connection import REDIS_ERRORS, Keys, RedisHealth, async_client, redacted
from service.scaleout.worker_heartbeat import live_workers
from service.settings import ModalityConfig, ServiceSettings
from unirep_errors import ServiceUnavailableError

log = logging.getLogger(__name__)

REPLY_TTL_S = 3600
"""A dead gateway's reply stream disappears after this (the live one refreshes it)."""
DEADLINE_MARGIN_S = 0.05
"""Answer 503 this long before a batch's earliest deadline, so the answer arrives within it."""
READ_BLOCK_MS = 1000


@dataclass
class _Waiting:
    modality: str
    future: asyncio.Future[BatchResult]
    entry_id: bytes | None = None


class RedisStreamsTransport(Transport):
    runs_models = False  # the stream workers record each forward pass; a reply's merged size is not re-counted

    def __init__(self, settings: ServiceSettings, metrics: Metrics) -> None:
        if not settings.redis_url:
            raise ValueError("the scale-out gateway needs redis_url (UNIREP_REDIS_URL)")
        self.settings = settings
        self.metrics = metrics
        self.keys = Keys(settings.redis_namespace)
        self.gateway_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.reply_key = self.keys.reply(self.gateway_id)
        self.client = async_client(settings.redis_url, settings.redis_timeout_s)
        self.reader = async_client(settings.redis_url, settings.redis_timeout_s, blocking=True)
        self.health = RedisHealth("streams", settings.redis_retry_s, metrics, settings.redis_url)
        self.versions: dict[str, str] = {}
        """Serving key -> the model version this gateway's batches ask for (the workers check it)."""
        self.required: set[str] = set()
        """The modalities whose default models readiness needs (repository versions come and go)."""
        self.live: dict[str, int] = {}
        """Serving key -> devices of live workers serving it."""
        self.worker_infos: list[dict[str, Any]] = []
        """The live workers' descriptions, as last read (``refresh``)."""
        self._waiting: dict[str, _Waiting] = {}
        self._in_flight = 0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopped = False

    # --- readiness ------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started and not self._stopped and self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        if not self.health.up:
            return f"{self.health.describe()}; the gateway cannot reach its workers"
        missing = [m for m in self.required if self.live.get(m, 0) == 0]
        if missing:
            return (
                f"no live worker serves {', '.join(missing)} (start `unirep worker` against the same Redis; a worker "
                f"without a heartbeat for {self.settings.worker_ttl_s:g} s counts as dead)"
            )
        return None

    # --- startup: what the workers serve ----------------------------------------------------------------------

    async def describe_models(self, configs: list[ModalityConfig], adapters: dict[str, Any]) -> dict[str, ServedModel]:
        """Wait until live workers announce every configured modality, then describe those models locally."""
        wanted = {cfg.modality for cfg in configs}
        announced: dict[str, dict[str, Any]] = {}
        next_log = 0.0
        while True:
            try:
                announced = await self.refresh()
                self.health.succeeded()
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
            missing = wanted - announced.keys()
            if not missing:
                break
            if time.monotonic() >= next_log:
                why = self.health.describe() if not self.health.up else "no live worker announced them yet"
                log.info("waiting for workers serving %s (%s)", ", ".join(sorted(missing)), why)
                next_log = time.monotonic() + 10.0
            await asyncio.sleep(0.25)
        served: dict[str, ServedModel] = {}
        for cfg in configs:
            model = ServedModel.from_description(cfg, adapters[cfg.modality], announced[cfg.modality])
            served[cfg.modality] = model
            self.versions[cfg.modality] = model.version
        self.required = set(wanted)
        return served

    def make_repository(self, runtime: Any) -> Any:
        """The model repository of a scale-out deployment: in Redis, loaded by the workers."""
        from service.scaleout.repository_sync import ScaleoutRepository

        return ScaleoutRepository(runtime, self)

    async def refresh(self) -> dict[str, dict[str, Any]]:
        """Serving key -> one live worker's description of its model; also refreshes ``live`` (device counts)."""
        self.worker_infos = await live_workers(self.client, self.keys, self.settings.worker_ttl_s)
        live: dict[str, int] = {}
        models: dict[str, dict[str, Any]] = {}
        for info in self.worker_infos:
            for modality, desc in info.get("models", {}).items():
                live[modality] = live.get(modality, 0) + max(1, len(info.get("devices", [])))
                models.setdefault(modality, desc)
        self.live = live
        return models

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_replies(), name="unirep-stream-replies"),
            asyncio.create_task(self._monitor(), name="unirep-stream-monitor"),
        ]
        self._started = True
        log.info(
            "scale-out gateway %s on %s, replies on %s", self.gateway_id, redacted(self.client_url), self.reply_key
        )

    @property
    def client_url(self) -> str:
        return self.settings.redis_url or ""

    # --- batches -------------------------------------------------------------------------------------------------

    def _capacity(self) -> int:
        devices = max(self.live.values(), default=0)
        return max(1, devices) * (1 + self.settings.prefetch_batches)

    async def reserve(self) -> None:
        while self._in_flight >= self._capacity():
            self._changed.clear()
            await self._changed.wait()
        self._in_flight += 1

    def release(self) -> None:
        self._in_flight -= 1
        self._changed.set()

    def idle(self) -> bool:
        return self._in_flight == 0

    async def execute(self, batch: Batch) -> BatchResult:
        waiting = _Waiting(batch.modality, asyncio.get_running_loop().create_future())
        try:
            if not self.health.up:
                raise ServiceUnavailableError(f"{self.health.describe()}; no worker can be reached", retry_after=1)
            if self.live.get(batch.modality, 0) == 0:
                raise ServiceUnavailableError(f"no live worker serves {batch.modality}", retry_after=1)
            fields = encode_batch(batch, self.versions.get(batch.modality, ""), self.reply_key)
            self._waiting[batch.batch_id] = waiting
            self.metrics.stream_pending_batches.set(len(self._waiting))
            try:
                entry: Any = await self.client.xadd(self.keys.stream(batch.modality), fields)  # type: ignore[arg-type]
                waiting.entry_id = entry
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                raise ServiceUnavailableError(self.health.describe(), retry_after=1) from None
            deadlines = [i.deadline for i in batch.items if i.deadline is not None]
            timeout = None if not deadlines else max(0.0, min(deadlines) - time.time() - DEADLINE_MARGIN_S)
            try:
                return await asyncio.wait_for(asyncio.shield(waiting.future), timeout)
            except TimeoutError:
                await self._forget(batch.modality, waiting)
                raise ServiceUnavailableError(
                    f"no worker answered this {batch.modality} batch before its deadline (a worker that dies holding "
                    f"a batch is replaced after stream_claim_idle_ms={self.settings.stream_claim_idle_ms:g})",
                    retry_after=1,
                ) from None
        finally:
            self._waiting.pop(batch.batch_id, None)
            self.metrics.stream_pending_batches.set(len(self._waiting))
            self.release()

    async def _forget(self, modality: str, waiting: _Waiting) -> None:
        """Delete a given-up batch from its stream, so that no worker computes it later (best effort)."""
        if waiting.entry_id is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.xdel(self.keys.stream(modality), waiting.entry_id)

    def _fail_waiting(self, reason: str, modality: str | None = None) -> None:
        for waiting in list(self._waiting.values()):
            if (modality is None or waiting.modality == modality) and not waiting.future.done():
                waiting.future.set_exception(ServiceUnavailableError(reason, retry_after=1))

    # --- background tasks --------------------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        last: bytes | str = "0-0"  # the reply stream is new: this gateway id is unique to the process
        while not self._stopped:
            if not self.health.available():
                await asyncio.sleep(0.05)
                continue
            try:
                response: Any = await self.reader.xread({self.reply_key: last}, count=256, block=READ_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                self._fail_waiting(f"{self.health.describe()}; the batch's reply is lost")
                continue
            self.health.succeeded()
            done: list[bytes] = []
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    last = entry_id
                    done.append(entry_id)
                    self._route(fields)
            if done:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self.client.xdel(self.reply_key, *done)

    def _route(self, fields: dict[bytes, bytes]) -> None:
        try:
            result, worker = decode_result(fields)
        except Exception:
            log.exception("unreadable reply on %s", self.reply_key)
            return
        waiting = self._waiting.get(result.batch_id)
        if waiting is None or waiting.future.done():
            self.metrics.stream_late_replies.inc()
            log.info("dropped a reply for batch %s from %s: already answered or given up", result.batch_id, worker)
            return
        waiting.future.set_result(result)

    async def _monitor(self) -> None:
        """Track live workers and Redis; fail waiting batches that nobody can answer any more."""
        interval = min(1.0, self.settings.worker_ttl_s / 3)
        while not self._stopped:
            if self.health.available():
                try:
                    await self.refresh()
                    await self.client.expire(self.reply_key, REPLY_TTL_S)
                    self.health.succeeded()
                except REDIS_ERRORS as exc:
                    self.health.failed(exc)
                    self._fail_waiting(f"{self.health.describe()}; the batch's reply is lost")
            for modality in list(self.versions):
                if modality in self.required:
                    self.metrics.stream_workers.labels(modality).set(self.live.get(modality, 0))
                if self.health.up and self.live.get(modality, 0) == 0:
                    self._fail_waiting(f"no live worker serves {modality} any more", modality)
            self._changed.set()  # capacity follows the live workers
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_waiting("the gateway stopped")
        with contextlib.suppress(*REDIS_ERRORS):
            await self.client.delete(self.reply_key)
        for client in (self.client, self.reader):
            with contextlib.suppress(Exception):
                await client.aclose()
