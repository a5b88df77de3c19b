"""Every Prometheus metric the service exports, defined in this one module (base units: seconds, bytes, ratios).

Each app gets its own ``CollectorRegistry`` so that several apps in one process (tests, tools) never collide on
the global registry; ``/metrics`` renders that registry. Grafana dashboards and the SDK docs name these metrics, so
renaming one is a breaking change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "unirep"
CONTENT_TYPE = CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from service.runtime.work import BatchResult

# Latency buckets from 1 ms to 60 s: CPU video batches take seconds, GPU image batches a few milliseconds.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RATIO = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    """The service's metric families; attributes are the prometheus-client objects, labelled as documented."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP inference requests by modality, endpoint and status code",
            ["modality", "endpoint", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "End-to-end time of an inference request in the service",
            ["modality", "endpoint"],
            buckets=_LATENCY,
            registry=r,
        )
        self.preprocess_duration = Histogram(
            f"{PREFIX}_preprocess_duration_seconds",
            "Decode time in the preprocessing pool, per item",
            ["modality"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_duration = Histogram(
            f"{PREFIX}_queue_duration_seconds",
            "Time an item waited in its bucket queue before compute",
            ["modality"],
            buckets=_LATENCY,
            registry=r,
        )
        self.inference_duration = Histogram(
            f"{PREFIX}_inference_duration_seconds",
            "Model time of one batch (stack, copy, forward, postprocess)",
            ["modality", "device"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Items per executed batch",
            ["modality"],
            buckets=_BATCH,
            registry=r,
        )
        self.batch_fill_ratio = Histogram(
            f"{PREFIX}_batch_fill_ratio",
            "Executed batch size over max_batch_size",
            ["modality"],
            buckets=_RATIO,
            registry=r,
        )
        self.model_items = Counter(
            f"{PREFIX}_model_items",
            "Items that reached the model (ran in a batch)",
            ["modality"],
            registry=r,
        )
        self.batches = Counter(f"{PREFIX}_batches", "Executed batches", ["modality"], registry=r)
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth",
            "Items waiting in a bucket queue",
            ["modality", "bucket"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests",
            "Inference requests being handled by the gateway",
            registry=r,
        )
        self.cache_hits = Counter(f"{PREFIX}_cache_hits", "Result cache hits", ["modality"], registry=r)
        self.cache_misses = Counter(f"{PREFIX}_cache_misses", "Result cache misses", ["modality"], registry=r)
        self.dropped = Counter(
            f"{PREFIX}_dropped_requests",
            "Requests dropped before compute (reason: deadline, disconnected)",
            ["modality", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests",
            "Requests refused at admission (reason: queue_full, deadline, draining)",
            ["modality", "reason"],
            registry=r,
        )
        self.preprocess_failures = Counter(
            f"{PREFIX}_preprocess_failures",
            "Decoder processes lost (reason: timeout, crash) and replaced",
            ["modality", "reason"],
            registry=r,
        )
        self.worker_ready = Gauge(
            f"{PREFIX}_worker_ready",
            "1 when a device worker has warmed every bucket",
            ["device"],
            registry=r,
        )
        self.backend_info = Gauge(
            f"{PREFIX}_backend_info",
            "1 for the inference backend each modality runs on, per device (torch, openvino, onnxruntime, ...)",
            ["modality", "device", "backend"],
            registry=r,
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the service reports ready (warm, not draining)", registry=r)
        self.model_changes = Counter(
            f"{PREFIX}_model_changes",
            "Model repository changes by model and result (loaded, failed, unloaded), one per version",
            ["model", "result"],
            registry=r,
        )
        self.model_load_duration = Histogram(
            f"{PREFIX}_model_load_duration_seconds",
            "Loading one model version: build, export, check and warm-up, until it is switched in (or fails)",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.gpu_memory_allocated = Gauge(
            f"{PREFIX}_gpu_memory_allocated_bytes",
            "CUDA memory allocated by a worker's tensors",
            ["device"],
            registry=r,
        )
        self.gpu_memory_max_allocated = Gauge(
            f"{PREFIX}_gpu_memory_max_allocated_bytes",
            "Peak CUDA memory allocated by a worker's tensors",
            ["device"],
            registry=r,
        )

        # Redis: shared cache, API keys, scale-out over Redis Streams.
        self.redis_up = Gauge(f"{PREFIX}_redis_up", "1 while Redis answers (0 after a failed call)", registry=r)
        self.redis_errors = Counter(
            f"{PREFIX}_redis_errors",
            "Redis calls that failed (component: cache, auth, streams); the cache is then bypassed",
            ["component"],
            registry=r,
        )
        self.cache_coalesced = Counter(
            f"{PREFIX}_cache_coalesced",
            "Requests answered by an identical request computed at the same time (also counted as cache hits)",
            ["modality"],
            registry=r,
        )
        self.auth_rejected = Counter(
            f"{PREFIX}_auth_rejected",
            "Requests refused by API-key checks (reason: missing, invalid, rate_limited, forbidden)",
            ["reason"],
            registry=r,
        )
        self.stream_workers = Gauge(
            f"{PREFIX}_stream_workers",
            "Live scale-out workers (heartbeat within worker_ttl_s) serving a modality, as a gateway sees them",
            ["modality"],
            registry=r,
        )
        self.stream_pending_batches = Gauge(
            f"{PREFIX}_stream_pending_batches",
            "Batches a gateway sent to the workers and awaits",
            registry=r,
        )
        self.stream_late_replies = Counter(
            f"{PREFIX}_stream_late_replies",
            "Worker replies a gateway discarded: the batch was already answered (duplicate) or given up (late)",
            registry=r,
        )
        self.stream_reclaimed = Counter(
            f"{PREFIX}_stream_reclaimed_batches",
            "Batches a worker took over from a dead worker (XAUTOCLAIM)",
            ["modality"],
            registry=r,
        )

    def initialize(self, modalities: list[str], redis: bool = False) -> None:
        """Create every known label combination at 0, so that dashboards and alerts (rates, ratios, the queue-full
        alert) read 0 instead of "no data" until the first event."""
        for modality in modalities:
            for reason in ("queue_full", "deadline", "draining"):
                self.rejected.labels(modality, reason)
            for reason in ("timeout", "crash"):
                self.preprocess_failures.labels(modality, reason)
            for reason in ("deadline", "disconnected"):
                self.dropped.labels(modality, reason)
            for counter in (self.cache_hits, self.cache_misses, self.batches, self.model_items):
                counter.labels(modality)
            if redis:
                self.cache_coalesced.labels(modality)
                self.stream_reclaimed.labels(modality)
        self.rejected.labels("all", "draining")
        if redis:
            for reason in ("missing", "invalid", "rate_limited", "forbidden"):
                self.auth_rejected.labels(reason)
            for component in ("cache", "auth", "streams"):
                self.redis_errors.labels(component)

    def record_batch(self, modality: str, result: BatchResult, max_batch_size: int) -> None:
        """One forward pass (a ``BatchResult``), recorded by the process that ran it and nowhere else.

        Items the device worker skipped (deadline passed, client gone) are counted as dropped; the rest are the
        batch's model items.
        """
        for r in result.items:
            code = getattr(r.error, "code", None)
            if code in ("deadline_exceeded", "client_disconnected"):
                self.dropped.labels(modality, "deadline" if code == "deadline_exceeded" else "disconnected").inc()
        if result.batch_size:
            self.batches.labels(modality).inc()
            self.model_items.labels(modality).inc(result.batch_size)
            self.batch_size.labels(modality).observe(result.batch_size)
            self.batch_fill_ratio.labels(modality).observe(min(1.0, result.batch_size / max_batch_size))
            self.inference_duration.labels(modality, result.device).observe(result.inference_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


REDIS_METRIC_NAMES: tuple[str, ...] = (
    f"{PREFIX}_redis_up",
    f"{PREFIX}_redis_errors",
    f"{PREFIX}_cache_coalesced",
    f"{PREFIX}_auth_rejected",
    f"{PREFIX}_stream_workers",
    f"{PREFIX}_stream_pending_batches",
    f"{PREFIX}_stream_late_replies",
    f"{PREFIX}_stream_reclaimed_batches",
)
"""Families that matter only with Redis configured (labelled ones have no samples until used)."""

METRIC_NAMES: tuple[str, ...] = tuple(
    family.name for family in Metrics().registry.collect() if family.name not in REDIS_METRIC_NAMES
)
"""Family names as the text parser reports them (counters without ``_total``), for tests and dashboards: read off
a fresh ``Metrics``, so a metric defined above is listed without being named twice."""
