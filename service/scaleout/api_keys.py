"""API keys (Bearer tokens, stored hashed in Redis) and per-key rate limits shared by every gateway.

Why this shape:
- A token is 32 random bytes, so a plain SHA-256 of it is a safe verifier (slow password hashes exist for
  guessable secrets); Redis holds only the hash, a short id, a name and the key's limits, never the token.
- One Lua script per request looks the hash up and applies the key's limit atomically, with Redis's own clock
  (``TIME``): one round trip, and gateways on hosts with skewed clocks still share one limit.
- The limit is GCRA (the generic cell rate algorithm): ``rate_per_minute`` sustained with ``burst`` requests at
  once, and it tells a refused client exactly when to retry (``Retry-After``).
- A key may carry a weight (``unirep keys create --weight``, default 1): its client's share of the decoders and
  of batch places is proportional to it (``service.runtime.fair_queue``). It comes back with the same lookup.
- Redis unreachable: keys cannot be checked, so requests fail closed with 503 (never served unauthenticated).
  Revoking a key takes effect on the next request: nothing is cached in the gateways.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from service.metrics import Metrics
from service.scaleout.connection import REDIS_ERRORS, Keys, RedisHealth
from unirep_errors import ForbiddenError, RateLimitedError, ServiceUnavailableError, UnauthorizedError

TOKEN_PREFIX = "urk_"
ADMIN_SCOPE = "admin"
MIN_WEIGHT = 0.01
MAX_WEIGHT = 100.0
"""A key's weight is bounded: one key cannot claim (nearly) every decoder, nor be starved to nothing."""

# KEYS: hash->id key, id-record prefix, rate-state prefix. ARGV: default rate/min (0 = unlimited), default burst.
# Returns {0} for an unknown key, else {1, id, allowed (0/1), retry_after_ms, weight ('' when the default)}.
_CHECK = """
local id = redis.call('GET', KEYS[1])
if not id then return {0} end
local rec = redis.call('HMGET', KEYS[2] .. id, 'name', 'rate_per_minute', 'burst', 'weight')
if not rec[1] then return {0} end
local weight = rec[4] or ''
local rate = tonumber(rec[2]) or tonumber(ARGV[1])
local burst = tonumber(rec[3]) or tonumber(ARGV[2])
if rate <= 0 then return {1, id, 1, 0, weight} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = 60000 / rate
local rkey = KEYS[3] .. id
local tat = tonumber(redis.call('GET', rkey)) or now
if tat < now then tat = now end
local ahead = tat - now
local tolerance = interval * (burst - 1)
if ahead > tolerance then
    return {1, id, 0, math.ceil(ahead - tolerance), weight}
end
local new_tat = tat + interval
redis.call('SET', rkey, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, id, 1, 0, weight}
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_weight(weight: float) -> float:
    """A key's weight, or ValueError: a finite number from ``MIN_WEIGHT`` to ``MAX_WEIGHT``."""
    if not (math.isfinite(weight) and MIN_WEIGHT <= weight <= MAX_WEIGHT):
        raise ValueError(f"a key's weight must be from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}, not {weight!r}")
    return float(weight)


def stored_weight(raw: bytes | str | None) -> float:
    """The weight of a key record's field: 1 when absent, and clamped to the bounds (a hand-edited record cannot
    claim more)."""
    if raw in (None, b"", ""):
        return 1.0
    try:
        weight = float(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return 1.0
    return min(MAX_WEIGHT, max(MIN_WEIGHT, weight)) if math.isfinite(weight) else 1.0


@dataclass(frozen=True)
class Grant:
    """A request's valid key: its id and its fair-scheduling weight."""

    key_id: str
    weight: float = 1.0


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    prefix: str
    created_at: float
    rate_per_minute: float | None
    burst: int | None
    admin: bool = False
    """Admin scope: may also manage the model repository (load, unload); other keys may only run inference."""
    weight: float = 1.0
    """Its client's share of decoders and batch places, relative to other clients' (1 by default)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "rate_per_minute": self.rate_per_minute,
            "burst": self.burst,
            "admin": self.admin,
            "weight": self.weight,
        }


class ApiKeyAuth:
    """The gateway's check on the inference routes: a valid key within its limit, or 401 / 429 / 503."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        health: RedisHealth,
        metrics: Metrics,
        rate_per_minute: float | None,
        burst: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.health = health
        self.metrics = metrics
        self.default_rate = rate_per_minute or 0.0
        self.default_burst = burst
        self._check = client.register_script(_CHECK)

    async def authorize(self, authorization: str | None) -> str:
        """The key id of a request's ``Authorization: Bearer <key>`` header, or the error to answer."""
        return (await self.grant(authorization)).key_id

    async def grant(self, authorization: str | None) -> Grant:
        """The key (id and weight) of a request's ``Authorization: Bearer <key>`` header, or the error to answer."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.metrics.auth_rejected.labels("missing").inc()
            raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'")
        if not self.health.available():
            raise ServiceUnavailableError(f"cannot check API keys: {self.health.describe()}", retry_after=1)
        try:
            reply = await self._check(
                keys=[self.keys.key_by_hash(hash_token(token)), self.keys.key_record(""), self.keys.rate("")],
                args=[self.default_rate, self.default_burst],
            )
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            raise ServiceUnavailableError(f"cannot check API keys: {self.health.describe()}", retry_after=1) from None
        self.health.succeeded()
        if not reply or int(reply[0]) == 0:
            self.metrics.auth_rejected.labels("invalid").inc()
            raise UnauthorizedError("the API key is not valid (unknown or revoked)")
        key_id = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        if int(reply[2]) == 0:
            self.metrics.auth_rejected.labels("rate_limited").inc()
            retry_s = max(1, math.ceil(int(reply[3]) / 1000))
            raise RateLimitedError(
                f"API key {key_id} is over its rate limit; retry after {retry_s} s", retry_after=retry_s, key=key_id
            )
        return Grant(key_id, stored_weight(reply[4] if len(reply) > 4 else None))

    async def authorize_admin(self, authorization: str | None) -> str:
        """``authorize``, and the key must have the admin scope (403 otherwise): managing models needs it."""
        key_id = await self.authorize(authorization)
        try:
            scope = await self.client.hget(self.keys.key_record(key_id), "scope")
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            raise ServiceUnavailableError(f"cannot check API keys: {self.health.describe()}", retry_after=1) from None
        if (scope.decode() if isinstance(scope, bytes) else scope) != ADMIN_SCOPE:
            self.metrics.auth_rejected.labels("forbidden").inc()
            raise ForbiddenError(f"API key {key_id} may run inference only: managing models needs an admin key")
        return key_id


class ApiKeyStore:
    """``unirep keys create|list|revoke``: the records behind ``ApiKeyAuth`` (synchronous, for the CLI)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def create(
        self,
        name: str,
        rate_per_minute: float | None = None,
        burst: int | None = None,
        admin: bool = False,
        weight: float = 1.0,
    ) -> tuple[str, KeyInfo]:
        """A new key: the token (shown once, never stored) and its record; ValueError for a weight out of bounds."""
        weight = check_weight(weight)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key_id = secrets.token_hex(6)
        info = KeyInfo(key_id, name, token[:10], time.time(), rate_per_minute, burst, admin, weight)
        record: dict[str, str] = {
            "name": name,
            "prefix": info.prefix,
            "created_at": f"{info.created_at:.6f}",
            "hash": hash_token(token),
        }
        if rate_per_minute is not None:
            record["rate_per_minute"] = repr(float(rate_per_minute))
        if burst is not None:
            record["burst"] = str(int(burst))
        if admin:
            record["scope"] = ADMIN_SCOPE
        if weight != 1.0:
            record["weight"] = repr(weight)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.key_record(key_id), mapping=record)  # type: ignore[arg-type]
        pipe.set(self.keys.key_by_hash(hash_token(token)), key_id)
        pipe.sadd(self.keys.key_index, key_id)
        pipe.execute()
        return token, info

    def list(self) -> list[KeyInfo]:
        ids = sorted(m.decode() for m in self.client.smembers(self.keys.key_index))  # type: ignore[union-attr]
        out: list[KeyInfo] = []
        for key_id in ids:
            raw: dict[bytes, bytes] = self.client.hgetall(self.keys.key_record(key_id))  # type: ignore[assignment]
            if not raw:
                continue
            rec = {k.decode(): v.decode() for k, v in raw.items()}
            out.append(
                KeyInfo(
                    key_id,
                    rec.get("name", ""),
                    rec.get("prefix", ""),
                    float(rec.get("created_at", 0.0)),
                    float(rec["rate_per_minute"]) if "rate_per_minute" in rec else None,
                    int(rec["burst"]) if "burst" in rec else None,
                    rec.get("scope") == ADMIN_SCOPE,
                    stored_weight(rec.get("weight")),
                )
            )
        return sorted(out, key=lambda k: k.created_at)

    def revoke(self, key_id: str) -> bool:
        """Delete a key (by id, or by its unique name); True when it existed."""
        record = self.keys.key_record(key_id)
        token_hash = self.client.hget(record, "hash")
        if token_hash is None:
            matches = [k for k in self.list() if k.name == key_id]
            if len(matches) != 1:
                return False
            return self.revoke(matches[0].key_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.key_by_hash(token_hash.decode()))  # type: ignore[union-attr]
        pipe.delete(record)
        pipe.delete(self.keys.rate(key_id))
        pipe.srem(self.keys.key_index, key_id)
        pipe.execute()
        return True
