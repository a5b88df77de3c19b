"""The Redis building blocks in-process against a real Redis: codec, cache, single-flight, API keys and limits."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import torch

from service.metrics import Metrics
from service.runtime.singleflight import SingleFlight
from service.runtime.work import Batch, BatchItem, BatchResult, ItemResult
from service.scaleout.api_keys import ApiKeyAuth, ApiKeyStore, Grant
from service.scaleout.codec import decode_batch, decode_result, encode_batch, encode_result
from service.scaleout.connection import Keys, RedisHealth, async_client, redacted, sync_client
from service.scaleout.shared_cache import RedisCache
from tests.redis.helpers import RedisServer
from unirep_errors import DeadlineExceededError, RateLimitedError, ServiceUnavailableError, UnauthorizedError


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_batches_and_results_travel_as_binary_and_round_trip() -> None:
    items = [
        BatchItem("a", torch.randn(3, 8, 8), "classify", 3, 100.0, 200.0),
        BatchItem("b", torch.randn(3, 8, 8), "embed", 0, 101.0, None),
    ]
    fields = encode_batch(Batch("image", (3, 8, 8), items, 16, batch_id="b1"), "m@v1", "reply:g1")
    assert len(fields[b"x"]) == 2 * 3 * 8 * 8 * 4  # raw float32, no JSON for tensors
    assert len(fields[b"meta"]) < 400
    request = decode_batch(fields)
    assert request.version == "m@v1" and request.reply_to == "reply:g1"
    assert request.batch.batch_id == "b1" and request.batch.shape == (3, 8, 8)
    for sent, got in zip(items, request.batch.items, strict=True):
        assert torch.equal(sent.tensor, got.tensor)
        assert (got.item_id, got.task, got.top_k, got.enqueued_at, got.deadline) == (
            sent.item_id,
            sent.task,
            sent.top_k,
            sent.enqueued_at,
            sent.deadline,
        )

    embedding = torch.randn(320).tolist()
    result = BatchResult(
        "b1",
        "cpu",
        150.0,
        0.02,
        2,
        [
            ItemResult("a", scores=[(5, 0.5), (2, 0.25)]),
            ItemResult("b", embedding=embedding),
            ItemResult("c", error=DeadlineExceededError("late", stage="worker")),
        ],
    )
    back, worker = decode_result(encode_result(result, "w1/cpu"))
    assert worker == "w1/cpu" and back.batch_id == "b1" and back.batch_size == 2
    assert back.items[0].scores == [(5, 0.5), (2, 0.25)]
    assert back.items[1].embedding == pytest.approx(embedding)
    error = back.items[2].error
    assert isinstance(error, DeadlineExceededError) and error.details == {"stage": "worker"}


def test_redis_cache_stores_with_ttl_under_its_namespace(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = async_client(redis_server.url, 1.0)
        cache = RedisCache(client, Keys("unit"), 0.3, RedisHealth("cache", 1.0))
        await cache.set("unirep:result:abc:def", {"predictions": [{"label": "x", "score": 0.5}]})
        assert await cache.get("unirep:result:abc:def") == {"predictions": [{"label": "x", "score": 0.5}]}
        assert await client.exists("unit:result:abc:def") == 1
        await asyncio.sleep(0.45)
        assert await cache.get("unirep:result:abc:def") is None  # the TTL passed
        await client.aclose()

    asyncio.run(scenario())


def test_an_unreachable_redis_is_bypassed_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        url = _closed_port_url()
        cache = RedisCache(async_client(url, 0.5), Keys(), 60.0, RedisHealth("cache", 5.0, metrics, url))
        assert await cache.get("k") is None
        await cache.set("k", {"v": 1})  # breaker open: not even tried
        started = time.monotonic()
        assert await cache.get("k") is None
        assert time.monotonic() - started < 0.05
        assert metrics.redis_errors.labels("cache")._value.get() == 1
        assert metrics.redis_up._value.get() == 0

    asyncio.run(scenario())
    assert "bypassed" in caplog.text


def test_identical_requests_on_two_gateways_compute_once(redis_server: RedisServer) -> None:
    """Two SingleFlight objects (two gateways) sharing one Redis: ten identical requests, one computation."""

    async def scenario() -> None:
        clients = [async_client(redis_server.url, 1.0) for _ in range(2)]
        flights = [SingleFlight(RedisCache(c, Keys("sf"), 60.0, RedisHealth("cache", 1.0))) for c in clients]
        computed = 0

        async def request(i: int) -> tuple[dict[str, int], bool]:
            nonlocal computed
            async with flights[i % 2].lead("unirep:result:same:key", time.monotonic() + 10) as lease:
                if lease.result is not None:
                    return lease.result, True
                computed += 1
                await asyncio.sleep(0.3)
                await lease.publish({"answer": 42})
                return {"answer": 42}, False

        results = await asyncio.gather(*(request(i) for i in range(10)))
        assert computed == 1
        assert all(value == {"answer": 42} for value, _ in results)
        assert sum(1 for _, hit in results if not hit) == 1
        for client in clients:
            await client.aclose()

    asyncio.run(scenario())


def test_a_failed_leader_hands_the_computation_to_a_follower(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = async_client(redis_server.url, 1.0)
        flight = SingleFlight(RedisCache(client, Keys("sf2"), 60.0, RedisHealth("cache", 1.0)))
        attempts = 0

        async def request() -> dict[str, int]:
            nonlocal attempts
            async with flight.lead("unirep:result:k2", time.monotonic() + 10) as lease:
                if lease.result is not None:
                    return lease.result
                attempts += 1
                await asyncio.sleep(0.1)
                if attempts == 1:
                    raise ServiceUnavailableError("the first leader's worker went away")
                await lease.publish({"ok": 1})
                return {"ok": 1}

        outcomes = await asyncio.gather(*(request() for _ in range(4)), return_exceptions=True)
        assert attempts == 2
        assert sum(isinstance(o, ServiceUnavailableError) for o in outcomes) == 1
        assert outcomes.count({"ok": 1}) == 3
        await client.aclose()

    asyncio.run(scenario())


def test_api_keys_are_hashed_at_rest_limited_and_revocable(redis_server: RedisServer) -> None:
    keys = Keys("auth")
    store = ApiKeyStore(sync_client(redis_server.url, 2.0), keys)
    token, info = store.create("ci", rate_per_minute=60.0, burst=2)
    unlimited, _ = store.create("batch-jobs", rate_per_minute=None)
    raw = redis_server.client()
    stored = b"".join(
        k + b"".join(v for v in raw.hgetall(k).values()) if raw.type(k) == b"hash" else k + (raw.get(k) or b"")
        for k in raw.scan_iter(match="auth:*")
        if raw.type(k) in (b"hash", b"string")
    )
    assert token.encode() not in stored and token[10:].encode() not in stored
    assert [k.name for k in store.list()] == ["ci", "batch-jobs"]

    async def scenario() -> None:
        metrics = Metrics()
        client = async_client(redis_server.url, 1.0)
        auth = ApiKeyAuth(client, keys, RedisHealth("auth", 1.0), metrics, rate_per_minute=None, burst=5)
        with pytest.raises(UnauthorizedError):
            await auth.authorize(None)
        with pytest.raises(UnauthorizedError):
            await auth.authorize("Bearer urk_not-a-key")
        assert await auth.authorize(f"Bearer {token}") == info.key_id
        assert await auth.authorize(f"bearer {token}") == info.key_id  # burst of 2
        with pytest.raises(RateLimitedError) as refused:
            await auth.authorize(f"Bearer {token}")
        assert refused.value.details["retry_after"] == 1  # one request per second at 60/min
        for _ in range(20):  # the default rate is unlimited
            await auth.authorize(f"Bearer {unlimited}")
        assert store.revoke(info.key_id) and not store.revoke(info.key_id)
        with pytest.raises(UnauthorizedError):
            await auth.authorize(f"Bearer {token}")
        assert metrics.auth_rejected.labels("rate_limited")._value.get() == 1
        await client.aclose()

    asyncio.run(scenario())


def test_urls_are_logged_without_their_password() -> None:
    assert redacted("redis://:s3cret@redis:6379/0") == "redis://***@redis:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_key_carries_its_weight_to_the_gateway(redis_server: RedisServer) -> None:
    keys = Keys("weights")
    store = ApiKeyStore(sync_client(redis_server.url, 2.0), keys)
    heavy, heavy_info = store.create("gold", weight=3.0)
    plain, _ = store.create("plain")
    edited, edited_info = store.create("edited", weight=2.0)
    redis_server.client().hset(keys.key_record(edited_info.key_id), "weight", "1e9")  # a hand-edited record
    for bad in (0.0, -1.0, float("nan"), float("inf"), 101.0):
        with pytest.raises(ValueError, match="weight"):
            store.create("bad", weight=bad)
    assert {k.name: k.weight for k in store.list()} == {"gold": 3.0, "plain": 1.0, "edited": 100.0}

    async def scenario() -> None:
        client = async_client(redis_server.url, 1.0)
        auth = ApiKeyAuth(client, keys, RedisHealth("auth", 1.0), Metrics(), rate_per_minute=None, burst=5)
        assert await auth.grant(f"Bearer {heavy}") == Grant(heavy_info.key_id, 3.0)
        assert (await auth.grant(f"Bearer {plain}")).weight == 1.0
        assert (await auth.grant(f"Bearer {edited}")).weight == 100.0  # clamped to the bound
        limited = ApiKeyAuth(client, keys, RedisHealth("auth", 1.0), Metrics(), rate_per_minute=60.0, burst=5)
        assert (await limited.grant(f"Bearer {heavy}")).weight == 3.0  # also through the rate-limited path
        await client.aclose()

    asyncio.run(scenario())
