"""How long a dead worker's batch waits before a live worker takes it over, measured on its own: one gateway,
two workers, one request. The worker holding it is killed with SIGKILL; the answer must come within the
configured claim idle time (plus the reclaim poll, half of it, and the batch's own compute), not tens of seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.redis.helpers import RedisServer, kill9, launch, stop, wait_ready
from tests.redis.test_scaleout import holds_a_batch
from tests.service import media
from tests.service.server import IMAGE_ONLY

CLAIM_IDLE_MS = 2000
DELAY_MS = 1500
SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_IMAGE__WEIGHTS": "none",
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_STREAM_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
    "UNIREP_WORKER_TTL_S": "2",
}


def test_a_killed_workers_batch_is_taken_over_within_the_claim_idle_time(
    workdir: Path, redis_server: RedisServer
) -> None:
    env = {**SETTINGS, "UNIREP_REDIS_URL": redis_server.url}
    workers = [launch("worker", workdir, {**env, "UNIREP_DEBUG_INFERENCE_DELAY_MS": str(DELAY_MS)}) for _ in range(2)]
    gateway = launch("gateway", workdir, env)
    try:
        wait_ready(*workers, gateway)
        answer: dict[str, object] = {}

        def send() -> None:
            response = httpx.post(
                f"{gateway.url}/classify/image",
                files={"file": media.jpeg(1)},
                headers={"X-Request-Timeout-Ms": "60000"},
                timeout=90,
            )
            answer.update(status=response.status_code, at=time.monotonic(), body=response.text)

        sender = threading.Thread(target=send)
        sender.start()
        victim = None
        end = time.monotonic() + 30
        while victim is None and time.monotonic() < end:
            for worker in workers:
                if holds_a_batch(redis_server.url, worker.process.pid, timeout=0.05):
                    victim = worker
                    break
        assert victim is not None, "no worker picked up the batch"
        kill9(victim)
        killed_at = time.monotonic()
        sender.join(90)
        assert answer.get("status") == 200, answer
        takeover_s = float(answer["at"]) - killed_at  # type: ignore[arg-type]
        bound = CLAIM_IDLE_MS / 1000 * 1.5 + DELAY_MS / 1000 + 3.0  # idle + poll + compute + slack for a busy CI
        assert takeover_s < bound, f"answered {takeover_s:.1f} s after the kill; expected under {bound:.1f} s"
        survivor = next(w for w in workers if w is not victim)
        assert survivor.metric("unirep_stream_reclaimed_batches_total") == 1
    finally:
        for proc in [gateway, *workers]:
            stop(proc)
