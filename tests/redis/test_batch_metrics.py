"""Scale-out records every forward pass once: the stream worker that ran it counts its items, the gateway does not
count them again (a reply carries the merged batch size, which a gateway would otherwise add up once per batch).

One ``unirep gateway`` and one ``unirep worker`` on a real ``redis-server``, the image model only, cache off;
requests are sent concurrently so that the worker merges the gateway's batches.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.redis.helpers import RedisServer, launch, stop, wait_ready
from tests.service.media import MEDIA

REQUESTS = 12
OFF = {f"UNIREP_{m}__ENABLED": "false" for m in ("AUDIO", "VIDEO", "POINTCLOUD", "TIMESERIES")}


def test_model_items_equal_the_requests(workdir: Path, redis_server: RedisServer) -> None:
    env = {**OFF, "UNIREP_CACHE_ENABLED": "false", "UNIREP_REDIS_URL": redis_server.url}
    env |= {"UNIREP_IMAGE__MAX_BATCH_SIZE": "4", "UNIREP_IMAGE__MAX_DELAY_MS": "20"}
    worker = launch("worker", workdir, {**env, "UNIREP_DEBUG_INFERENCE_DELAY_MS": "100"})
    gateway = launch("gateway", workdir, env)
    try:
        wait_ready(worker, gateway)

        def classify(seed: int) -> int:
            name, data = MEDIA["image"](seed)
            return httpx.post(f"{gateway.url}/classify/image", files={"file": (name, data)}, timeout=60).status_code

        with ThreadPoolExecutor(REQUESTS) as pool:
            statuses = list(pool.map(classify, range(REQUESTS)))
        assert statuses == [200] * REQUESTS
        on_worker = worker.metric("unirep_model_items_total", modality="image")
        on_gateway = gateway.metric("unirep_model_items_total", modality="image")
        assert (on_worker, on_gateway) == (REQUESTS, 0)
        batches = worker.metric("unirep_batches_total", modality="image")
        assert 3 <= batches <= REQUESTS  # at most 4 a pass
        assert gateway.metric("unirep_requests_total", modality="image", status="200") == REQUESTS
        for proc in (worker, gateway):  # the worker's own health server sends the gateway's security headers
            health = httpx.get(f"{proc.url}/healthz", timeout=10)
            assert health.headers["x-content-type-options"] == "nosniff", proc.command
            assert "frame-ancestors 'none'" in health.headers["content-security-policy"]
    finally:
        stop(gateway)
        stop(worker)
