"""The workers' heartbeats: a stream worker's ``Heartbeat``, and ``live_workers``, the gateways' reading of them
(the one place that knows how they are kept in Redis). Kept apart from the batch loop, which the heartbeat only has
to be told about, and from the gateway's transport.

Every ``worker_ttl_s / 5`` the heartbeat writes the worker into a sorted set scored with Redis's own clock (so
hosts with skewed clocks agree on who is alive), beside the description the gateways build their model descriptions
from, and re-claims (XCLAIM JUSTID) the entries the worker's consumers are computing, which resets their idle time:
only a worker that stopped heartbeating (dead, or cut off from Redis) has its batches taken over, however long a batch
takes. The batch loop reports those entries with ``holding``.

A worker counts as live while its last beat is within ``worker_ttl_s`` by that same clock.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
import redis.asyncio as aioredis

from service.scaleout.connection import REDIS_ERRORS, Keys, RedisHealth

_HEARTBEAT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


class Heartbeat:
    """Keeps ``worker_id`` visible to the gateways and its entries in progress its own."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
        health: RedisHealth,
        ttl_s: float,
    ) -> None:
        self.client, self.keys, self.worker_id, self.describe, self.health = client, keys, worker_id, describe, health
        self.interval_s = max(0.1, ttl_s / 5)
        self._script = client.register_script(_HEARTBEAT)
        self._in_progress: dict[str, set[tuple[str, bytes]]] = defaultdict(set)
        """Consumer -> (stream, entry id) being computed now."""
        self._lock = threading.Lock()

    def beat_now(self) -> None:
        """Heartbeat with the current description (also on a repository change, so gateways see it at once)."""
        info = json.dumps(self.describe())
        self._script(keys=[self.keys.workers, self.keys.worker_info], args=[self.worker_id, info])

    def run(self, stopping: threading.Event) -> None:
        """Beat until ``stopping`` is set (a thread of its own)."""
        while not stopping.is_set():
            try:
                self.beat_now()
                self._touch_in_progress()
                self.health.succeeded()
            except REDIS_ERRORS as exc:
                self.health.failed(exc)
            stopping.wait(self.interval_s)

    @contextlib.contextmanager
    def holding(self, consumer: str, entries: Iterable[tuple[str, bytes]]) -> Iterator[None]:
        """``consumer`` computes ``entries`` (stream, entry id) inside: each beat re-claims them."""
        held = list(entries)
        with self._lock:
            self._in_progress[consumer].update(held)
        try:
            yield
        finally:
            with self._lock:
                self._in_progress[consumer].difference_update(held)

    def _touch_in_progress(self) -> None:
        """XCLAIM our own in-progress entries (JUSTID): their idle time restarts, so nobody reclaims them."""
        with self._lock:
            held = {c: list(entries) for c, entries in self._in_progress.items() if entries}
        for consumer, entries in held.items():
            by_stream: dict[str, list[bytes]] = defaultdict(list)
            for stream, entry_id in entries:
                by_stream[stream].append(entry_id)
            for stream, ids in by_stream.items():
                self.client.xclaim(stream, self.keys.group, consumer, 0, list[Any](ids), justid=True)


async def live_workers(client: aioredis.Redis, keys: Keys, ttl_s: float) -> list[dict[str, Any]]:
    """The descriptions of the workers whose last beat is within ``ttl_s`` (by Redis's clock)."""
    now_s, now_us = await client.time()
    now_ms = now_s * 1000 + now_us // 1000
    ids: Any = await client.zrangebyscore(keys.workers, now_ms - ttl_s * 1000, "+inf")
    infos: Any = await client.hmget(keys.worker_info, ids) if ids else []
    return [json.loads(raw) for raw in infos if raw is not None]
