"""The result cache in Redis: shared by every gateway, surviving their restarts, with a TTL.

It implements ``service.runtime.cache.ResultCache`` and adds the two primitives that
``service.runtime.singleflight`` needs to compute identical requests once across gateways: a lease
(``SET NX PX``) that one gateway holds while it computes a key, and its release (compare-and-delete, so a lease
that expired and was taken over is never deleted by its old holder).

Redis going away never fails a request here: every call is bounded by ``redis_timeout_s``, a failure opens the
``RedisHealth`` breaker (logged, counted in ``unirep_redis_errors_total{component="cache"}``), and the cache then
behaves as empty until Redis answers again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from service.scaleout.connection import REDIS_ERRORS, Keys, RedisHealth

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisCache:
    def __init__(self, client: aioredis.Redis, keys: Keys, ttl_s: float | None, health: RedisHealth) -> None:
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.health = health
        self._release = client.register_script(_RELEASE)

    async def get(self, key: str) -> dict[str, Any] | None:
        if not self.health.available():
            return None
        try:
            raw = await self.client.get(self.keys.result(key))
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            return None
        self.health.succeeded()
        if raw is None:
            return None
        try:
            value: dict[str, Any] = json.loads(raw)
        except ValueError:
            log.warning("ignoring an unreadable cache entry %s", key)
            return None
        return value

    async def set(self, key: str, value: dict[str, Any]) -> None:
        if not self.health.available():
            return
        blob = json.dumps(value, separators=(",", ":"))
        ttl_ms = int(self.ttl_s * 1000) if self.ttl_s is not None else None
        try:
            await self.client.set(self.keys.result(key), blob, px=ttl_ms)
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
        else:
            self.health.succeeded()

    async def close(self) -> None:
        """Nothing: the client belongs to ``RedisServices``, which closes it after the runtime stopped."""

    # --- leases for single-flight across gateways ------------------------------------------------------------

    async def try_lease(self, key: str, token: str, lease_s: float) -> bool | None:
        """True: we compute ``key``; False: another gateway does; None: Redis is unavailable (compute alone)."""
        if not self.health.available():
            return None
        try:
            got = await self.client.set(self.keys.flight(key), token, nx=True, px=max(1, int(lease_s * 1000)))
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            return None
        self.health.succeeded()
        return bool(got)

    async def release_lease(self, key: str, token: str) -> None:
        if not self.health.available():
            return
        try:
            await self._release(keys=[self.keys.flight(key)], args=[token])
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
