"""The result cache: a small async interface with an in-memory LRU implementation.

Key = sha256(payload bytes) + modality + task + request params + model version (``ServedModel.version``, which
covers the weights and preprocessing), so a new checkpoint or preprocessing change never serves a stale result.
Values are the JSON-ready result parts (predictions or embedding), without timings. The interface is async so
that a Redis implementation (TTL, shared across gateways) drops in without changing the gateway.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol


def cache_key(data_sha256: str, modality: str, task: str, params: dict[str, Any], model_version: str) -> str:
    blob = json.dumps([modality, task, params, model_version], sort_keys=True, default=str)
    return f"unirep:result:{data_sha256}:{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


class ResultCache(Protocol):
    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def set(self, key: str, value: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class MemoryLRUCache:
    """Bounded LRU with an optional TTL; thread-safe so that it could also be shared with worker threads."""

    def __init__(self, max_entries: int = 4096, ttl_s: float | None = None) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            stored, value = entry
            if self.ttl_s is not None and time.monotonic() - stored > self.ttl_s:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    async def set(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    async def close(self) -> None:
        with self._lock:
            self._data.clear()


class NullCache:
    """The cache when ``cache_enabled`` is false: every lookup misses."""

    async def get(self, key: str) -> dict[str, Any] | None:
        return None

    async def set(self, key: str, value: dict[str, Any]) -> None:
        return None

    async def close(self) -> None:
        return None
