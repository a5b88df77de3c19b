"""Connecting to Redis, naming its keys, and noticing when it goes away.

Every Redis-backed part (result cache, API keys, Streams transport, worker) builds its client here, so that the
timeouts are the same everywhere: a Redis that stops answering costs a request at most ``redis_timeout_s`` once,
after which ``RedisHealth`` bypasses it for ``redis_retry_s`` (a circuit breaker) instead of making every request
wait for a connect timeout. Blocking stream reads use a client whose socket timeout
also covers their BLOCK time.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis

from service.redaction import redacted as redacted  # where every Redis URL in a log line is made safe

if TYPE_CHECKING:
    from service.metrics import Metrics

log = logging.getLogger(__name__)

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
"""What a Redis call raises when the server is unreachable, restarting or too slow."""
BLOCKING_SLACK_S = 2.0
"""Socket timeout of blocking clients beyond ``redis_timeout_s``: their reads BLOCK at most 1 s."""


def async_client(url: str, timeout_s: float, *, blocking: bool = False) -> aioredis.Redis:
    """An asyncio client (its pool reconnects by itself once the server is back)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s + BLOCKING_SLACK_S if blocking else timeout_s,
        retry_on_timeout=False,
        health_check_interval=30,
    )


def sync_client(url: str, timeout_s: float, *, blocking: bool = False) -> redis.Redis:
    """A thread-safe blocking client, for the worker process (whose compute is synchronous anyway)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s + BLOCKING_SLACK_S if blocking else timeout_s,
        retry_on_timeout=False,
        health_check_interval=30,
    )


class Keys:
    """Every key the service writes, under one namespace (``redis_namespace``), so deployments can share a Redis."""

    def __init__(self, namespace: str = "unirep") -> None:
        self.ns = namespace

    def result(self, cache_key: str) -> str:
        # service.runtime.cache.cache_key already starts with "unirep:"; re-root it under our namespace.
        return f"{self.ns}:{cache_key.removeprefix('unirep:')}"

    def flight(self, cache_key: str) -> str:
        return f"{self.ns}:flight:{cache_key.removeprefix('unirep:')}"

    def key_by_hash(self, token_hash: str) -> str:
        return f"{self.ns}:apikey:hash:{token_hash}"

    def key_record(self, key_id: str) -> str:
        return f"{self.ns}:apikey:id:{key_id}"

    @property
    def key_index(self) -> str:
        return f"{self.ns}:apikeys"

    def rate(self, key_id: str) -> str:
        return f"{self.ns}:rate:{key_id}"

    def stream(self, modality: str) -> str:
        return f"{self.ns}:stream:{modality}"

    def reply(self, gateway_id: str) -> str:
        return f"{self.ns}:reply:{gateway_id}"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> last heartbeat (Redis server time, ms)."""
        return f"{self.ns}:workers"

    @property
    def worker_info(self) -> str:
        """Hash: worker id -> JSON description (modalities, model versions, weights, devices)."""
        return f"{self.ns}:worker-info"

    @property
    def repository(self) -> str:
        """Hash: model name -> JSON record of its desired versions (``service.scaleout.repository_state``)."""
        return f"{self.ns}:repository"

    def repository_file(self, sha256: str) -> str:
        """A repository version's file, stored once by content."""
        return f"{self.ns}:repository:file:{sha256}"

    @property
    def repository_generation(self) -> str:
        """Counter bumped on every repository change: what workers and gateways watch."""
        return f"{self.ns}:repository:generation"

    @property
    def repository_serial(self) -> str:
        """Counter naming each loaded version's serving key (``pets/2#7``), the same on every process."""
        return f"{self.ns}:repository:serial"

    @property
    def repository_lock(self) -> str:
        """Held by the gateway changing the repository, so that changes from several gateways do not interleave."""
        return f"{self.ns}:repository:lock"

    group = "workers"
    """The one consumer group every worker joins, on every model stream."""


class RedisHealth:
    """A circuit breaker over Redis calls: failures are logged once per outage, counted, and open the breaker."""

    def __init__(self, component: str, retry_s: float, metrics: Metrics | None = None, url: str = "") -> None:
        self.component = component
        self.retry_s = retry_s
        self.metrics = metrics
        self.url = redacted(url)
        self.down_since: float | None = None
        self.last_error = ""
        self._retry_at = 0.0

    def available(self) -> bool:
        """False while the breaker is open: callers skip Redis (the cache misses, streams answer 503)."""
        return self.down_since is None or time.monotonic() >= self._retry_at

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.redis_errors.labels(self.component).inc()
            self.metrics.redis_up.set(0)
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "Redis at %s failed (%s): %s bypassed for %.1f s at a time until it answers again",
                self.url,
                self.last_error,
                self.component,
                self.retry_s,
            )
        self._retry_at = now + self.retry_s

    def succeeded(self) -> None:
        if self.down_since is not None:
            log.info("Redis at %s answers again (%s was down %.1f s)", self.url, self.component, self.outage_s())
            self.down_since = None
        if self.metrics is not None:
            self.metrics.redis_up.set(1)

    def outage_s(self) -> float:
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def describe(self) -> str:
        """Why Redis cannot be used, in words a client may see: no address, no library text."""
        return f"Redis is unreachable (for {self.outage_s():.0f} s)" if self.down_since else "Redis is unreachable"
