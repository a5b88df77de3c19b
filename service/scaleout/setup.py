"""What ``create_app`` attaches when ``redis_url`` is set: the shared result cache and, if enabled, API keys.

One client (short timeouts) serves both; its breakers are separate, so that a cache bypass never hides an auth
failure (keys fail closed, the cache fails open). Imported only when Redis is configured.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from service.metrics import Metrics
from service.scaleout.api_keys import ApiKeyAuth
from service.scaleout.connection import Keys, RedisHealth, async_client
from service.scaleout.shared_cache import RedisCache
from service.settings import ServiceSettings


@dataclass
class RedisServices:
    client: aioredis.Redis
    cache: RedisCache | None
    auth: ApiKeyAuth | None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()


def redis_services(settings: ServiceSettings, metrics: Metrics, *, want_cache: bool) -> RedisServices:
    assert settings.redis_url
    client = async_client(settings.redis_url, settings.redis_timeout_s)
    keys = Keys(settings.redis_namespace)
    cache = None
    if want_cache and settings.cache_enabled:
        health = RedisHealth("cache", settings.redis_retry_s, metrics, settings.redis_url)
        cache = RedisCache(client, keys, settings.cache_ttl_s, health)
    auth = None
    if settings.auth_enabled:
        health = RedisHealth("auth", settings.redis_retry_s, metrics, settings.redis_url)
        auth = ApiKeyAuth(client, keys, health, metrics, settings.rate_limit_per_minute, settings.rate_limit_burst)
    return RedisServices(client, cache, auth)
