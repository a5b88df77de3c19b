"""Identical requests in flight at the same time are computed once, here and across gateways.

``SingleFlight.lead(key, deadline)`` is an async context manager around the cache lookup and the computation:

- within one process, the first request for a key leads; identical requests that arrive while it computes wait for
  its result (no Redis involved, so ``unirep serve`` with the in-memory cache coalesces too);
- the leader looks the key up in the cache; on a miss, when the cache is shared (``RedisCache``), it takes a lease
  on the key in Redis; a gateway that finds the lease taken polls the cache until the result appears, the lease is
  released (the other gateway failed: it then computes itself) or its own deadline passes;
- the leader ``publish``-es the result (into the cache, and to its local followers) and leaves the context.

Followers of a leader that failed with an input error (422/413/415: the same bytes would fail the same way) get
that error; after any other failure (deadline, disconnect, 503) one of them becomes the leader and computes.
With the cache disabled (``NullCache``) nothing is coalesced: every request computes, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from service.runtime.cache import NullCache, ResultCache
from service.scaleout.shared_cache import RedisCache
from unirep_errors import DeadlineExceededError, InputError

POLL_S = 0.02
"""How often a gateway waiting on another gateway's lease looks for the result."""
DEFAULT_LEASE_S = 60.0
"""Lease of a request without a deadline (a dead gateway's lease expires after it)."""


@dataclass
class Lease:
    """What ``lead`` yields: a cached (or coalesced) result, or the duty to compute and ``publish`` it."""

    key: str
    result: dict[str, Any] | None = None
    coalesced: bool = False
    """The result was computed by an identical request in flight (here or on another gateway)."""
    token: str | None = None
    published: dict[str, Any] | None = None
    _flight: asyncio.Future[tuple[str, Any]] | None = None
    _cache: ResultCache | None = None

    async def publish(self, value: dict[str, Any]) -> None:
        """Store the result and hand it to the local followers at once."""
        self.published = value
        if self._flight is not None and not self._flight.done():
            self._flight.set_result(("value", value))
        if self._cache is not None:
            await self._cache.set(self.key, value)


class SingleFlight:
    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache
        self.enabled = not isinstance(cache, NullCache)
        self._flights: dict[str, asyncio.Future[tuple[str, Any]]] = {}

    @contextlib.asynccontextmanager
    async def lead(self, key: str, deadline: float | None = None) -> AsyncIterator[Lease]:
        """``deadline`` is a ``time.monotonic()`` instant: a follower never waits past it (504)."""
        if not self.enabled:
            yield Lease(key)
            return
        while (flight := self._flights.get(key)) is not None:
            kind, payload = await _wait(asyncio.shield(flight), deadline)
            if kind == "value":
                yield Lease(key, result=payload, coalesced=True)
                return
            if kind == "error":
                raise payload
            # the leader gave up: the first follower back here leads
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        lease = Lease(key, _flight=flight, _cache=self.cache)
        try:
            lease.result = await self.cache.get(key)
            if lease.result is None and isinstance(self.cache, RedisCache):
                lease.result = await self._lead_across_gateways(self.cache, lease, deadline)
            if lease.result is not None and not flight.done():
                flight.set_result(("value", lease.result))
            yield lease
        except InputError as exc:
            if not flight.done():
                flight.set_result(("error", exc))
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not flight.done():
                flight.set_result(("retry", None))
            if lease.token is not None and isinstance(self.cache, RedisCache):
                await self.cache.release_lease(key, lease.token)

    async def _lead_across_gateways(
        self, cache: RedisCache, lease: Lease, deadline: float | None
    ) -> dict[str, Any] | None:
        """Take the key's lease in Redis (None: compute it), or wait for the gateway that holds it (its result)."""
        token = uuid.uuid4().hex
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            lease_s = DEFAULT_LEASE_S if remaining is None else max(remaining, 0.0) + 1.0
            got = await cache.try_lease(lease.key, token, lease_s)
            if got is None:
                return None  # Redis is unavailable: compute here, uncoalesced
            if got:
                lease.token = token
                return None
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(
                    "the deadline passed while an identical request was computed elsewhere", stage="coalesced"
                )
            await asyncio.sleep(POLL_S if remaining is None else min(POLL_S, remaining))
            value = await cache.get(lease.key)
            if value is not None:
                lease.coalesced = True
                return value


async def _wait(flight: asyncio.Future[tuple[str, Any]], deadline: float | None) -> tuple[str, Any]:
    if deadline is None:
        return await flight
    try:
        return await asyncio.wait_for(flight, max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise DeadlineExceededError(
            "the deadline passed while an identical request was being computed", stage="coalesced"
        ) from None
