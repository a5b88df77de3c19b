"""The worker side of scale-out (``unirep worker``): models on this host's devices, batches from Redis Streams.

Each device gets a consumer (``<worker id>/<device>``) in the one consumer group of every model stream, and a
thread that loops: take over batches a dead worker left pending (XAUTOCLAIM, once they sat idle for
``stream_claim_idle_ms``), else read up to ``stream_read_count`` new batches (XREADGROUP COUNT n BLOCK), merge
batches of the same bucket up to ``max_batch_size`` into one forward pass (``DeviceWorker.execute``: items past
their deadline are skipped, never computed), reply to each batch's gateway, then XACK and XDEL the entries.

A heartbeat thread (``worker_heartbeat``) keeps the worker visible and re-claims the entries being computed, so
that only a worker that stopped heartbeating (dead, or cut off from Redis) has its batches taken over, however long
a batch takes. A worker that restarts joins as a new consumer and takes work at once.
Repository versions (``pets/2#7``) are loaded, announced and released by ``worker_repository``'s own thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from servable.served import ServedModel, metrics_label
from service.metrics import Metrics
from service.runtime import live_models
from service.runtime.assembly import build_models, make_adapters, make_device_workers
from service.runtime.device_worker import DeviceWorker
from service.runtime.transport import follow_backend_switches
from service.runtime.work import Batch, BatchResult
from service.scaleout.codec import BatchRequest, decode_batch, encode_failure, encode_result, pack_requests
from service.scaleout.connection import REDIS_ERRORS, Keys, RedisHealth, redacted, sync_client
from service.scaleout.worker_heartbeat import Heartbeat
from service.scaleout.worker_repository import WorkerRepository
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

READ_BLOCK_MS = 500
REPLY_MAXLEN = 10_000

Entry = tuple[str, bytes, dict[bytes, bytes] | None]
"""(stream key, entry id, fields; None when the entry was deleted while pending)."""


class StreamWorker:
    def __init__(self, settings: ServiceSettings, metrics: Metrics) -> None:
        if not settings.redis_url:
            raise ValueError("`unirep worker` needs redis_url (UNIREP_REDIS_URL)")
        self.settings = settings
        self.metrics = metrics
        self.keys = Keys(settings.redis_namespace)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.url = settings.redis_url
        self.client = sync_client(settings.redis_url, settings.redis_timeout_s)
        self.health = RedisHealth("streams", settings.redis_retry_s, metrics, settings.redis_url)
        self.served: dict[str, ServedModel] = {}
        """Serving key (a modality, or a repository version's ``pets/2#7``) -> model; replaced, never mutated."""
        self.adapters: dict[str, Any] = {}
        self.devices: list[DeviceWorker] = []
        self.ready = False
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(
            self.client, self.keys, self.worker_id, self.description, self.health, settings.worker_ttl_s
        )
        self.repository = WorkerRepository(self)

    # --- startup ---------------------------------------------------------------------------------------------

    def build(self) -> None:
        """Load every enabled modality's model and warm it on every device (as ``unirep serve`` does)."""
        self.adapters = make_adapters(self.settings)
        self.served = build_models(self.settings, self.adapters)
        self.devices = make_device_workers(self.settings, self.served, decoders=0)  # no decoders run here
        for device in self.devices:
            follow_backend_switches(self.metrics, device)
        for served in self.served.values():
            live_models.record_backends(served, self.devices, self.metrics)
        threads = [threading.Thread(target=d.warmup) for d in self.devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for device in self.devices:
            self.metrics.worker_ready.labels(device.device_name).set(1)

    def description(self) -> dict[str, Any]:
        """What the gateways read: the models (version, weights, shapes) and devices of this worker."""
        models = {key: sm.describe() for key, sm in self.served.items()}
        return {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "devices": [d.device_name for d in self.devices],
            "models": models,
            "repository": dict(self.repository.states),
        }

    # --- main loop ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until ``stopping`` is set (SIGTERM), finishing the batches in hand, then leave the pool."""
        threading.Thread(target=self.heartbeat.run, args=(self.stopping,), name="unirep-heartbeat", daemon=True).start()
        threading.Thread(target=self.repository.run, name="unirep-repository", daemon=True).start()
        consumers = [
            threading.Thread(target=self._consume, args=(d,), name=f"unirep-consumer-{d.device_name}")
            for d in self.devices
        ]
        for thread in consumers:
            thread.start()
        self.ready = True
        self.metrics.ready.set(1)
        streams, devices = ", ".join(map(self.keys.stream, self.served)), ", ".join(d.device_name for d in self.devices)
        log.info("worker %s consuming %s on %s (Redis %s)", self.worker_id, streams, devices, redacted(self.url))
        for thread in consumers:
            thread.join()
        self.ready = False
        self.metrics.ready.set(0)
        with contextlib.suppress(*REDIS_ERRORS):
            self.client.zrem(self.keys.workers, self.worker_id)
            self.client.hdel(self.keys.worker_info, self.worker_id)
        log.info("worker %s left the pool", self.worker_id)

    def _ensure_groups(self, served: list[str]) -> None:
        for key in served:
            try:
                # Id 0: batches a gateway sent before any worker existed are served too (stale ones expire).
                self.client.xgroup_create(self.keys.stream(key), self.keys.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _consume(self, device: DeviceWorker) -> None:
        consumer = f"{self.worker_id}/{device.device_name}"
        reader = sync_client(self.settings.redis_url or "", self.settings.redis_timeout_s, blocking=True)
        grouped: list[str] = []
        next_claim = 0.0
        while not self.stopping.is_set():
            try:
                served = list(self.served)  # repository versions come and go (``worker_repository``)
                if served != grouped:
                    self._ensure_groups([key for key in served if key not in grouped])
                    grouped = served
                streams: dict[Any, Any] = {self.keys.stream(key): ">" for key in served}
                entries: list[Entry] = []
                if time.monotonic() >= next_claim:
                    entries = self._reclaim(reader, consumer)
                    next_claim = time.monotonic() + self.settings.stream_claim_idle_ms / 2000.0
                if not entries:
                    response: Any = reader.xreadgroup(
                        self.keys.group, consumer, streams, count=self.settings.stream_read_count, block=READ_BLOCK_MS
                    )
                    for stream, items in response or []:
                        entries.extend((stream.decode(), entry_id, fields) for entry_id, fields in items)
                self.health.succeeded()
                if entries:
                    self._process(device, reader, consumer, entries)
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc) or "UNBLOCKED" in str(exc):  # Redis lost its data, or a stream retired
                    grouped = []
                    continue
                log.exception("Redis refused a stream command")
                time.sleep(0.5)
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
                time.sleep(min(1.0, max(0.1, self.settings.redis_retry_s)))
        reader.close()

    def _reclaim(self, client: redis.Redis, consumer: str) -> list[Entry]:
        """Batches left pending by a worker that stopped heartbeating (their idle time passed the limit)."""
        out: list[Entry] = []
        idle_ms = int(self.settings.stream_claim_idle_ms)
        for key, served in list(self.served.items()):
            stream = self.keys.stream(key)
            reply: Any = client.xautoclaim(
                stream, self.keys.group, consumer, idle_ms, "0-0", count=self.settings.stream_read_count
            )
            claimed = reply[1] if len(reply) > 1 else []
            for entry_id, fields in claimed:
                out.append((stream, entry_id, fields or None))
            if claimed:
                self.metrics.stream_reclaimed.labels(served.modality).inc(len(claimed))
                log.warning("took over %d %s batch(es) from a dead worker", len(claimed), metrics_label(key))
        return out

    def _process(self, device: DeviceWorker, client: redis.Redis, consumer: str, entries: list[Entry]) -> None:
        with self.heartbeat.holding(consumer, ((s, e) for s, e, _ in entries)):
            requests: list[tuple[str, bytes, BatchRequest]] = []
            replies: list[tuple[str, dict[bytes, bytes]]] = []
            for stream, entry_id, fields in entries:
                request = self._decode(stream, entry_id, fields)
                if request is None:
                    continue
                refusal = self._refusal(request)
                if refusal is not None:
                    ids = [i.item_id for i in request.batch.items]
                    replies.append((request.reply_to, encode_failure(request.batch.batch_id, refusal, consumer, ids)))
                else:
                    requests.append((stream, entry_id, request))
            sizes = {key: sm.config.max_batch_size for key, sm in self.served.items()}
            for group in pack_requests(requests, sizes):
                replies.extend(self._run(device, consumer, group))
            pipe = client.pipeline(transaction=False)
            for reply_to, fields in replies:
                pipe.xadd(reply_to, fields, maxlen=REPLY_MAXLEN, approximate=True)  # type: ignore[arg-type]
                pipe.expire(reply_to, 3600)
            for stream, entry_id, _ in entries:
                pipe.xack(stream, self.keys.group, entry_id)
                pipe.xdel(stream, entry_id)
            pipe.execute()

    def _decode(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes] | None) -> BatchRequest | None:
        if not fields:
            return None  # deleted while pending (its gateway gave up on it): just acknowledge it
        try:
            return decode_batch(fields)
        except Exception:
            log.exception("dropping an unreadable entry %s on %s", entry_id.decode(), stream)
            return None

    def _refusal(self, request: BatchRequest) -> Any:
        from unirep_errors import ServiceUnavailableError

        served = self.served.get(request.batch.modality)
        if served is None:
            return ServiceUnavailableError(f"worker {self.worker_id} does not serve {request.batch.modality}")
        if request.version != served.version or tuple(request.batch.shape) != served.input_shape:
            return ServiceUnavailableError(
                f"the gateway asked for {request.version} with input {list(request.batch.shape)}, but worker "
                f"{self.worker_id} serves {served.version} with input {list(served.input_shape)}: give gateways "
                f"and workers the same model settings",
                retry_after=1,
            )
        return None

    def _run(
        self, device: DeviceWorker, consumer: str, group: list[tuple[str, bytes, BatchRequest]]
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        """One forward pass for batches of one bucket; one reply per batch (each its own items)."""
        first = group[0][2].batch
        items = [item for _, _, req in group for item in req.batch.items]
        merged = Batch(first.modality, first.shape, items, first.max_batch_size)
        result = device.execute(merged)
        limit = self.served[first.modality].config.max_batch_size
        self.metrics.record_batch(metrics_label(first.modality), result, limit)
        by_id = {r.item_id: r for r in result.items}
        out = []
        for _, _, req in group:
            part = BatchResult(
                req.batch.batch_id,
                result.device,
                result.started_at,
                result.inference_s,
                result.batch_size,
                [by_id[i.item_id] for i in req.batch.items],
            )
            out.append((req.reply_to, encode_result(part, consumer)))
        return out
