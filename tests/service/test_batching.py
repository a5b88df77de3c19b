"""Batching, deadlines and isolation under concurrency, against a real server (image only, no cache).

A 30 ms pause per batch (the ``debug_inference_delay_ms`` test hook) stands in for a bigger model so that
requests overlap on a 2-core CI machine; everything else is the real path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.service import media
from tests.service.server import IMAGE_ONLY, Server, running

SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_IMAGE__MAX_BATCH_SIZE": "8",
    "UNIREP_IMAGE__MAX_DELAY_MS": "20",
    "UNIREP_IMAGE__MAX_QUEUE_SIZE": "64",
    "UNIREP_DEBUG_INFERENCE_DELAY_MS": "30",
    "UNIREP_DEBUG_FAULT_INJECTION": "true",
    "UNIREP_PREPROCESS_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("batching"), SETTINGS) as srv:
        yield srv


async def _post_many(url: str, payloads: list[bytes], **headers: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        return await asyncio.gather(
            *(client.post("/classify/image", files={"file": ("x.jpg", p)}, headers=headers) for p in payloads)
        )


def post_many(server: Server, payloads: list[bytes]) -> list[httpx.Response]:
    return asyncio.run(_post_many(server.url, payloads))


def test_32_concurrent_requests_are_served_in_batches(server: Server) -> None:
    before_batches = server.metric("unirep_batches_total", modality="image")
    before_items = server.metric("unirep_model_items_total", modality="image")
    responses = post_many(server, [media.jpeg(seed)[1] for seed in range(32)])
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200]
    sizes = [int(r.headers["X-Batch-Size"]) for r in responses]
    assert max(sizes) > 1, sizes
    assert all(1 <= s <= 8 for s in sizes)
    batches = server.metric("unirep_batches_total", modality="image") - before_batches
    items = server.metric("unirep_model_items_total", modality="image") - before_items
    assert items == 32
    assert batches < 32  # some batches carried more than one item
    assert server.metric("unirep_batch_size_sum", modality="image") > server.metric(
        "unirep_batch_size_count", modality="image"
    )
    assert server.metric("unirep_batch_fill_ratio_count", modality="image") >= batches


def test_corrupt_file_among_15_good_ones_fails_alone(server: Server) -> None:
    good = [media.jpeg(100 + i)[1] for i in range(15)]
    corrupt = good[0][: len(good[0]) // 3]  # a real JPEG header, then nothing: truncated
    payloads = [*good[:7], corrupt, *good[7:]]
    responses = post_many(server, payloads)
    statuses = [r.status_code for r in responses]
    assert statuses[7] == 422, responses[7].text
    assert responses[7].json()["error"]["code"] == "undecodable_input"
    assert statuses[:7] + statuses[8:] == [200] * 15


def test_unmeetable_deadline_gives_504_and_never_reaches_the_model(server: Server) -> None:
    before_items = server.metric("unirep_model_items_total", modality="image")
    before_dropped = server.metric("unirep_dropped_requests_total", modality="image", reason="deadline")
    with server.client() as client:
        response = client.post("/classify/image", files={"file": media.jpeg(5)}, headers={"X-Request-Timeout-Ms": "10"})
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert server.metric("unirep_model_items_total", modality="image") == before_items
    assert server.metric("unirep_dropped_requests_total", modality="image", reason="deadline") == before_dropped + 1
    with server.client() as client:  # a generous deadline is fine
        ok = client.post("/classify/image", files={"file": media.jpeg(5)}, headers={"X-Request-Timeout-Ms": "20000"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("hang", 504, "preprocess_timeout"), ("crash", 422, "decoder_crashed"), ("oom", 413, "input_too_large")],
)
def test_misbehaving_decoder_fails_only_its_request(server: Server, fault: str, status: int, code: str) -> None:
    bad = f"UNIREP-FAULT:{fault}\n".encode()
    payloads = [bad, *(media.jpeg(200 + i)[1] for i in range(4))]
    responses = post_many(server, payloads)
    assert responses[0].status_code == status, responses[0].text
    assert responses[0].json()["error"]["code"] == code
    assert [r.status_code for r in responses[1:]] == [200] * 4
    # the pool replaced the lost process: the service keeps serving, and stays ready
    again = post_many(server, [media.jpeg(300 + i)[1] for i in range(4)])
    assert [r.status_code for r in again] == [200] * 4
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    if fault in ("hang", "crash"):
        reason = "timeout" if fault == "hang" else "crash"
        assert server.metric("unirep_preprocess_failures_total", modality="image", reason=reason) >= 1


def test_idle_server_meets_a_deadline_a_few_times_its_own_latency(server: Server) -> None:
    with server.client() as client:
        for seed in range(3):  # the decode and batch estimates learn from these
            assert client.post("/classify/image", files={"file": media.jpeg(400 + seed)}).status_code == 200
        alone = client.post("/classify/image", files={"file": media.jpeg(410)})
        budget = max(150.0, 4 * alone.json()["timings"]["total_ms"])
        ok = client.post(
            "/classify/image", files={"file": media.jpeg(411)}, headers={"X-Request-Timeout-Ms": f"{budget:.0f}"}
        )
    assert ok.status_code == 200, ok.text
