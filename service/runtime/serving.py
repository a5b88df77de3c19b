"""The serving runtime: built from the settings, it owns the served models, the preprocessing pool, the batcher,
the transport (with its device workers) and the result cache, and walks one request through them (the path itself
is ``compute.answer``).

Kept apart from the HTTP layer (``service.http``) so that the request path can be driven without HTTP (benchmarks,
other protocols), and so that scale-out injects its Redis cache and Redis Streams transport:
``ServiceRuntime(settings, metrics, cache=..., transport=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from modality_adapters import list_adapters
from servable.served import ServedModel
from service.metrics import Metrics
from service.repository.manager import ModelRepository, Repository
from service.runtime import live_models
from service.runtime.admission import latency_seeds
from service.runtime.assembly import (
    build_models,
    local_cache,
    make_adapters,
    make_batcher,
    make_decoder_pool,
    make_device_workers,
)
from service.runtime.batching import Batcher
from service.runtime.cache import ResultCache
from service.runtime.compute import Job, answer
from service.runtime.decoder_pool import DecoderPool
from service.runtime.fair_queue import ClientWeights
from service.runtime.model_table import ModelTable
from service.runtime.outcome import Outcome
from service.runtime.singleflight import SingleFlight
from service.runtime.stage_times import DecodeTimes
from service.runtime.transport import LocalTransport, Transport
from service.runtime.work import Task
from service.settings import ServiceSettings
from unirep_errors import InvalidParameterError, NotFoundError, ServiceUnavailableError

log = logging.getLogger(__name__)


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        metrics: Metrics,
        *,
        cache: ResultCache | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.cache: ResultCache = cache if cache is not None else local_cache(settings)
        self.flights = SingleFlight(self.cache)
        self.transport: Transport | None = transport
        self.served: dict[str, ServedModel] = {}
        """Every loaded model by its serving key (a default model's is its modality), retiring versions included."""
        self.table = ModelTable()
        """Which loaded model answers a name and version: what new requests resolve to."""
        self.users: Counter[str] = Counter()
        """Serving key -> requests inside ``infer`` now: a replaced version is released only when it reaches 0."""
        self.repository: Repository | None = None
        self.releasing: set[asyncio.Task[None]] = set()
        """Replaced or unloaded models waiting to drain before they are released (``live_models.release``)."""
        self.adapters: dict[str, Any] = {}
        self.pool: DecoderPool | None = None
        self.batcher: Batcher | None = None
        self.state = "starting"
        self.error: str | None = None
        self.in_flight = 0
        self.decode_times = DecodeTimes()
        self.decoding: dict[str, int] = {}
        """Modality -> requests being decoded right now (the batcher waits for them when a device is idle)."""
        self.weights = ClientWeights()
        """Each client's share weight (of decoders and batch places), noted by the intake from its API key."""

    # --- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (
            self.state == "ready"
            and self.pool is not None
            and self.pool.ready
            and self.transport is not None
            and self.transport.ready
        )

    async def start(self) -> None:
        """Start the decoder processes while the models load, warm the device workers, then report ready."""
        try:
            s = self.settings
            configs = s.modalities()
            self.adapters = make_adapters(s)
            self.metrics.initialize(list(self.adapters), redis=bool(s.redis_url))
            loop = asyncio.get_running_loop()
            self.pool = make_decoder_pool(s, self.adapters, self._on_decoder_lost, self.weights.of)
            pool_started = asyncio.create_task(self.pool.start())
            # A scale-out gateway loads no model: its transport describes the ones its stream workers serve.
            remote = await self.transport.describe_models(configs, self.adapters) if self.transport else None
            if remote is not None:
                self.served = remote
            else:
                self.served = await loop.run_in_executor(None, build_models, s, self.adapters)
            if self.transport is None:
                workers = await loop.run_in_executor(None, make_device_workers, s, self.served)
                self._record_backends(workers)
                self.transport = LocalTransport(workers, self.metrics, prefetch=s.prefetch_batches)
            self.batcher = make_batcher(
                self.served, self.transport, self.metrics, lambda m: self.decoding.get(m, 0), self.weights.of
            )
            # Warm up only once the decoder processes have started: their imports would otherwise compete for the
            # CPU and inflate the latencies that seed the batcher's deadline estimates.
            await pool_started
            await self.transport.start()
            hints = getattr(self.transport, "device_workers", [])
            for modality, served in self.served.items():
                self.batcher.add_bucket(modality, served.input_shape, latency_seeds(served, hints, s.warmup))
                self.table.route(served)
            await self.batcher.start()
            make_repository = getattr(self.transport, "make_repository", None)  # scale-out: the one in Redis
            if make_repository is not None:
                self.repository = make_repository(self)
            elif s.model_repository:
                self.repository = ModelRepository(self, s)
            if self.repository is not None:
                await self.repository.start()
            self.state = "ready"
            self.metrics.ready.set(1)
            log.info("ready: %s", ", ".join(sm.summary() for sm in self.served.values()))
        except Exception as exc:
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("startup failed")
            raise

    def _record_backends(self, workers: list[Any]) -> None:
        """Which backend serves each modality (``/models``, the log, and the ``backend_info`` metric)."""
        for served in self.served.values():
            live_models.record_backends(served, workers, self.metrics)

    def _on_decoder_lost(self, modality: str, reason: str) -> None:
        self.metrics.preprocess_failures.labels(modality, reason).inc()

    def begin_drain(self) -> None:
        if self.state in ("ready", "starting"):
            log.info("draining: readiness is off, no new requests are admitted")
            self.state = "draining"
            self.metrics.ready.set(0)

    async def drain(self, timeout: float) -> bool:
        """Wait for every admitted request to be answered (True), or until ``timeout`` seconds pass (False)."""
        self.begin_drain()
        end = time.monotonic() + timeout
        # New requests are refused at the gateway (check_admission); the batcher keeps admitting, because a request
        # that was still being decoded when the drain began was admitted and must be answered.
        while (self.in_flight > 0 or (self.batcher is not None and self.batcher.busy())) and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return self.in_flight == 0

    async def stop(self) -> None:
        self.state = "stopped"
        self.metrics.ready.set(0)
        if self.repository is not None:
            await self.repository.stop()
        for task in list(self.releasing):
            task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.transport is not None:
            await self.transport.stop()
        if self.pool is not None:
            await self.pool.close()
        await self.cache.close()

    # --- the request path --------------------------------------------------------------------------------------

    def served_model(self, modality: str) -> ServedModel:
        """The model loaded under a serving key (a modality's default model: the modality's name); 404 otherwise."""
        if modality in self.served:
            return self.served[modality]
        known = list_adapters()
        if modality not in known:
            raise NotFoundError(f"unknown modality {modality!r}; use one of {', '.join(known)}", modality=modality)
        served = self.served.get(modality)
        if served is None:
            if self.state == "starting":
                raise ServiceUnavailableError("the service is starting (loading and warming models)", retry_after=5)
            raise NotFoundError(f"modality {modality!r} is not enabled on this server", modality=modality)
        return served

    def model_for(self, modality: str, name: str | None = None, version: str | None = None) -> ServedModel:
        """The model a native request names (``?model=``, ``&version=``): it must be of ``modality``; without a
        name, the modality's default model."""
        if name is None and version is None:
            return self.served_model(modality)
        served = self.table.resolve(name or modality, version)
        if served.modality != modality:
            raise InvalidParameterError(f"model {served.model_name!r} takes {served.modality}, not {modality}")
        return served

    def check_admission(self) -> None:
        if self.state == "draining" or self.state == "stopped":
            self.metrics.rejected.labels("all", "draining").inc()
            raise ServiceUnavailableError("the service is shutting down; retry on another instance", retry_after=1)
        if not self.ready:
            reason = self.transport.unavailable_reason() if self.transport is not None else None
            if self.state == "ready" and reason is not None:  # scale-out: Redis or the stream workers are gone
                raise ServiceUnavailableError(reason, retry_after=1)
            raise ServiceUnavailableError("the service is starting (loading and warming models)", retry_after=5)

    def check_client(self, client: str, modality: str) -> None:
        """429 at once, before its body is read (refusing must be cheap), for a client over its decode-time
        backstop while others wait for decoders; crash budgets are checked once the input's format is known."""
        if self.pool is not None:
            self.pool.check_client(client, modality)

    def check_upload(self, client: str, modality: str, head: bytes, content_type: str) -> None:
        """429 from an upload's first bytes when its client is over its crash budget for that kind of input."""
        if self.pool is not None:
            self.pool.check_upload(client, modality, head, content_type)

    async def infer(
        self,
        modality: str,
        task: Task,
        data: bytes,
        *,
        top_k: int | None = None,
        timeout_ms: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        hints: dict[str, Any] | None = None,
        client: str = "anonymous",
        decoded_map: torch.Tensor | None = None,
        all_classes: bool = False,
        on_decoded: Callable[[torch.Tensor], None] | None = None,
    ) -> Outcome:
        """One request through cache, decoder pool, batcher and worker; admission was the caller's (the intake).

        ``decoded_map`` is an already-preprocessed C x H x W map (``data`` then only names it for the cache): it skips
        the decoder. ``all_classes`` asks for every class's score (an output tensor of scores, not a top-k list).
        ``on_decoded`` gets the decoded map (not on a cache hit): a preview draws it instead of decoding again. The
        upload is hashed once here, for the cache and the decoder's quarantine alike.
        """
        served = self.served_model(modality)
        job = Job(data, "", client, decoded_map, on_decoded)
        self.users[served.key] += 1  # held until answered: a replaced version is released only after this
        try:
            return await answer(self, served, task, top_k, timeout_ms, cancelled, hints, job, all_classes)
        finally:
            self.users[served.key] -= 1

    def describe_models(self) -> list[dict[str, Any]]:
        """``GET /models``: every routed model and version, with its state, without the wire-only weights detail."""
        return self.table.describe("READY" if self.ready else "LOADING")
