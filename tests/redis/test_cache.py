"""The shared result cache with real ``unirep serve`` processes and a real Redis (image only, to start fast).

Two gateways share one Redis: a hit returns the same body, another parameter misses, the cache outlives a gateway
restart, ten identical uploads in flight at once (spread over both gateways) run the model once, and a Redis that
goes away is bypassed while serve mode keeps answering.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.redis.helpers import Proc, RedisServer, launch, stop, wait_ready
from tests.service.media import jpeg
from tests.service.server import IMAGE_ONLY

BASE = {**IMAGE_ONLY, "UNIREP_REDIS_RETRY_S": "0.5"}


@pytest.fixture(scope="module")
def settings(redis_server: RedisServer, workdir: Path) -> dict[str, str]:
    from tests.redis.helpers import write_checkpoints

    # One fixed weights file for both processes: random-init weights would differ between them.
    weights = write_checkpoints(workdir, BASE, ("image",))
    # A slow model makes "in flight at the same time" certain on any machine.
    return {**BASE, **weights, "UNIREP_REDIS_URL": redis_server.url, "UNIREP_DEBUG_INFERENCE_DELAY_MS": "1000"}


@pytest.fixture(scope="module")
def gateways(workdir: Path, settings: dict[str, str]) -> Iterator[list[Proc]]:
    procs = [launch("serve", workdir, settings) for _ in range(2)]
    try:
        wait_ready(*procs)
        yield procs
    finally:
        for proc in procs:
            stop(proc)


def classify(proc: Proc, data: bytes, **params: int) -> httpx.Response:
    response = httpx.post(
        f"{proc.url}/classify/image", files={"file": ("p.jpg", data)}, params=params or None, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def body(response: httpx.Response) -> dict[str, object]:
    content = response.json()
    for volatile in ("timings", "batch_size"):
        content.pop(volatile)
    return content


def test_second_identical_upload_is_a_hit_with_the_same_body(gateways: list[Proc]) -> None:
    _, data = jpeg(seed=101)
    first = classify(gateways[0], data)
    second = classify(gateways[0], data)
    third = classify(gateways[1], data)  # the other gateway shares the cache
    assert [r.headers["X-Cache"] for r in (first, second, third)] == ["miss", "hit", "hit"]
    assert body(first) == body(second) == body(third)
    assert gateways[0].metric("unirep_cache_hits_total", modality="image") >= 1


def test_a_different_parameter_is_a_miss(gateways: list[Proc]) -> None:
    _, data = jpeg(seed=102)
    assert classify(gateways[0], data).headers["X-Cache"] == "miss"
    other = classify(gateways[0], data, top_k=2)
    assert other.headers["X-Cache"] == "miss" and len(other.json()["predictions"]) == 2
    assert classify(gateways[1], data, top_k=2).headers["X-Cache"] == "hit"


def test_ten_identical_uploads_in_flight_run_the_model_once(gateways: list[Proc]) -> None:
    _, data = jpeg(seed=103)
    before = sum(g.metric("unirep_model_items_total", modality="image") for g in gateways)
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda i: classify(gateways[i % 2], data), range(10)))
    after = sum(g.metric("unirep_model_items_total", modality="image") for g in gateways)
    assert after - before == 1
    assert sorted(r.headers["X-Cache"] for r in responses) == ["hit"] * 9 + ["miss"]
    assert all(body(r) == body(responses[0]) for r in responses)
    assert sum(g.metric("unirep_cache_coalesced_total", modality="image") for g in gateways) >= 9


def test_the_cache_outlives_a_gateway_restart(gateways: list[Proc], workdir: Path, settings: dict[str, str]) -> None:
    _, data = jpeg(seed=104)
    first = classify(gateways[0], data)
    stop(gateways[0])
    gateways[0] = launch("serve", workdir, settings)
    wait_ready(gateways[0])
    again = classify(gateways[0], data)
    assert again.headers["X-Cache"] == "hit" and body(again) == body(first)


def test_redis_going_away_is_bypassed_and_serve_keeps_answering(
    gateways: list[Proc], redis_server: RedisServer
) -> None:
    _, data = jpeg(seed=105)
    redis_server.stop()
    try:
        started = time.monotonic()
        responses = [classify(gateways[0], data) for _ in range(2)]
        assert [r.headers["X-Cache"] for r in responses] == ["miss", "miss"]
        assert time.monotonic() - started < 10
        assert gateways[0].metric("unirep_redis_errors_total", component="cache") >= 1
        assert gateways[0].metric("unirep_redis_up") == 0
        assert httpx.get(f"{gateways[0].url}/readyz", timeout=5).status_code == 200
    finally:
        redis_server.start()
    time.sleep(0.6)  # past redis_retry_s: the breaker lets the next call through
    classify(gateways[0], data)
    assert classify(gateways[0], data).headers["X-Cache"] == "hit"
    assert gateways[0].metric("unirep_redis_up") == 1
    assert "bypassed" in gateways[0].log_tail(20_000)
