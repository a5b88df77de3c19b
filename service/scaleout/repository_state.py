"""The model repository of a scale-out deployment, as Redis holds it: what gateways write and workers follow.

- ``<ns>:repository`` (hash): model name -> ``ModelRecord`` JSON: the versions gateways route (``routed``), the
  versions being loaded and not routed yet (``loading``), and why a version is not ready (``reasons``). A version is
  a ``VersionSpec``: its serving key (``pets/2#7``, the same on every process: the batcher bucket, the device
  workers' key and the stream ``<ns>:stream:pets/2#7``), the sha256 of its file and its serving config.
- ``<ns>:repository:file:<sha256>``: a version file, stored once by content (a load sends it once, every worker and
  gateway reads it from here, whichever gateway received it).
- ``<ns>:repository:generation``: bumped with every change; workers and gateways re-read the hash when it moves.

Workers hold every routed and loading version and announce, per serving key, READY / LOADING / UNAVAILABLE with the
reason, in the description they heartbeat (``"repository"``); a READY one is also in their ``"models"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from service.repository.manager import IndexEntry
from service.scaleout.connection import REDIS_ERRORS, Keys
from service.scaleout.worker_heartbeat import live_workers
from unirep_errors import ServiceUnavailableError

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"
LOCK_TTL_MS = 15 * 60 * 1000
"""A gateway that dies holding the repository lock frees it after this."""
LOCK_WAIT_S = 600.0
LOAD_WAIT_S = 600.0
UNREACHABLE = "Redis is unreachable: the model repository could not change (retry)"
"""How long a load waits for the workers to build and warm its versions."""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class VersionSpec:
    key: str
    file: str
    """sha256 of the version's model file (``Keys.repository_file``)."""
    section: dict[str, Any] = field(default_factory=dict)
    """Batching and backend settings from the model's config (``ModelFolderConfig.section``)."""


@dataclass
class ModelRecord:
    name: str
    routed: dict[int, VersionSpec] = field(default_factory=dict)
    loading: dict[int, VersionSpec] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(
            {
                "routed": {str(v): asdict(s) for v, s in self.routed.items()},
                "loading": {str(v): asdict(s) for v, s in self.loading.items()},
                "reasons": {str(v): r for v, r in self.reasons.items()},
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, name: str, raw: bytes | str) -> ModelRecord:
        data = json.loads(raw)
        return cls(
            name,
            {int(v): VersionSpec(**s) for v, s in data.get("routed", {}).items()},
            {int(v): VersionSpec(**s) for v, s in data.get("loading", {}).items()},
            {int(v): str(r) for v, r in data.get("reasons", {}).items()},
        )


def parse_records(raw: dict[Any, Any]) -> dict[str, ModelRecord]:
    out = {}
    for name, value in raw.items():
        text = name.decode() if isinstance(name, bytes) else str(name)
        out[text] = ModelRecord.loads(text, value)
    return out


def wanted(records: dict[str, ModelRecord]) -> dict[str, tuple[str, int, VersionSpec]]:
    """Serving key -> (name, version, spec) of every version a worker should hold: routed or loading."""
    out: dict[str, tuple[str, int, VersionSpec]] = {}
    for record in records.values():
        for table in (record.routed, record.loading):
            for version, spec in table.items():
                out[spec.key] = (record.name, version, spec)
    return out


async def read_records(client: aioredis.Redis, keys: Keys) -> dict[str, ModelRecord]:
    raw: Any = await client.hgetall(keys.repository)
    return parse_records(raw)


async def publish(client: aioredis.Redis, keys: Keys, record: ModelRecord) -> None:
    """Write one model's record and bump the generation, together."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.repository, record.name, record.dumps())
    pipe.incr(keys.repository_generation)
    await pipe.execute()


async def collect_files(client: aioredis.Redis, keys: Keys) -> int:
    """Delete the version files no record routes or loads any more (under the lock); how many."""
    referenced = {spec.file for _, _, spec in wanted(await read_records(client, keys)).values()}
    stale = [
        key
        async for key in client.scan_iter(match=keys.repository_file("*"), count=500)
        if (key.decode() if isinstance(key, bytes) else str(key)).rsplit(":", 1)[-1] not in referenced
    ]
    if stale:
        await client.delete(*stale)
    return len(stale)


class RepositoryLock:
    """One repository change at a time across gateways (SET NX with a token; freed by its holder, or by TTL).
    Redis failing meanwhile answers 503: the change did not happen, or not wholly (retry it)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client, self.keys, self.token = client, keys, uuid.uuid4().hex

    async def __aenter__(self) -> RepositoryLock:
        deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
        try:
            while not await self.client.set(self.keys.repository_lock, self.token, nx=True, px=LOCK_TTL_MS):
                if asyncio.get_running_loop().time() > deadline:
                    raise ServiceUnavailableError("another gateway is changing the model repository", retry_after=5)
                await asyncio.sleep(0.1)
        except REDIS_ERRORS:
            raise ServiceUnavailableError(UNREACHABLE, retry_after=1) from None
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            with contextlib.suppress(*REDIS_ERRORS):
                await collect_files(self.client, self.keys)
                await self.client.eval(_UNLOCK, 1, self.keys.repository_lock, self.token)
        finally:
            if isinstance(exc, REDIS_ERRORS):
                raise ServiceUnavailableError(UNREACHABLE, retry_after=1) from None


async def await_workers(
    client: aioredis.Redis, keys: Keys, ttl_s: float, new: dict[int, VersionSpec], wait_s: float = LOAD_WAIT_S
) -> dict[int, str]:
    """Wait until every live worker serves the ``new`` versions; the reasons of those that failed (none: ready).
    Without a live worker there is nobody to wait for: workers load the versions when they join."""
    deadline = time.monotonic() + wait_s
    while True:
        infos = await live_workers(client, keys, ttl_s)
        failures: dict[int, str] = {}
        waiting = False
        for version, spec in new.items():
            for info in infos:
                announced = info.get("repository", {}).get(spec.key)
                if announced is not None and announced["state"] == UNAVAILABLE:
                    failures.setdefault(version, announced["reason"])
                elif announced is None or spec.key not in info.get("models", {}):
                    waiting = True
        if failures or not waiting:
            return failures
        if time.monotonic() > deadline:
            return {v: f"the workers did not load it within {wait_s:g} s" for v in new}
        await asyncio.sleep(0.05)


def index_entry(record: ModelRecord, version: int, infos: list[dict[str, Any]]) -> IndexEntry:
    """One version's index entry: its record's state, with the live workers' (``infos``) for a routed one."""
    name, reason = record.name, record.reasons.get(version, "")
    if version in record.loading:
        return IndexEntry(name, str(version), LOADING, "loading on the workers")
    spec = record.routed.get(version)
    if spec is None:
        return IndexEntry(name, str(version), UNAVAILABLE, reason)
    if any(spec.key in info.get("models", {}) for info in infos):
        return IndexEntry(name, str(version), READY, reason)
    announced = [info.get("repository", {}).get(spec.key) for info in infos]
    if any(a is not None and a["state"] == LOADING for a in announced):
        return IndexEntry(name, str(version), LOADING, "loading on the workers")
    failed = [a["reason"] for a in announced if a is not None and a["state"] == UNAVAILABLE]
    return IndexEntry(name, str(version), UNAVAILABLE, "; ".join(failed) or "no live worker serves it")
