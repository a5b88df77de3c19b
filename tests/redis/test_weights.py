"""Weighted fair scheduling through real sockets: two API keys made by ``unirep keys create`` with weights 1 and 3
keep a real gateway saturated at once, and the weight-3 key's client gets clearly more of the bottleneck, whether
that is the one decoder (slow uploads) or the batch places (one item per batch, each batch held 150 ms); a lone key
is never refused. The exact arithmetic is unit-tested in ``tests/service/test_fair_queue.py``."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis.helpers import Proc, RedisServer, running, unirep_cli
from tests.service.media import jpeg
from tests.service.server import IMAGE_ONLY

SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_AUTH_ENABLED": "true",
    "UNIREP_RATE_LIMIT_PER_MINUTE": "60000",
    "UNIREP_REDIS_NAMESPACE": "weights",
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_DEBUG_FAULT_INJECTION": "true",
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_IMAGE__MAX_BATCH_SIZE": "1",
    "UNIREP_DEBUG_INFERENCE_DELAY_MS": "150",
}
SLOW = b"UNIREP-FAULT:slow\n"
"""0.3 s of decoding, then 415 (not an image): never reaches the model."""
SATURATE_S = 8.0
IN_FLIGHT = 4
"""Requests each client keeps in flight: both always wait for the bottleneck."""


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    return {**SETTINGS, "UNIREP_REDIS_URL": redis_server.url}


@pytest.fixture(scope="module")
def server(workdir: Path, env: dict[str, str]) -> Iterator[Proc]:
    with running("serve", workdir, env) as proc:
        yield proc


def key(env: dict[str, str], name: str, *flags: str) -> str:
    done = unirep_cli("keys", "create", name, "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["token"])


def saturate(server: Proc, tokens: dict[str, str], body: Callable[[str, int], bytes]) -> dict[str, Counter[int]]:
    """Every client keeps ``IN_FLIGHT`` requests going for ``SATURATE_S``; the statuses each got, by client."""
    statuses: dict[str, Counter[int]] = {name: Counter() for name in tokens}
    lock = threading.Lock()
    stop_at = time.monotonic() + SATURATE_S

    def loop(name: str, lane: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[name]}"}
        with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
            n = 0
            while time.monotonic() < stop_at:
                data = body(name, lane * 10_000 + n)
                status = client.post("/classify/image", files={"file": ("x.bin", data)}).status_code
                n += 1
                if time.monotonic() <= stop_at:  # only answers within the window, when both were saturating
                    with lock:
                        statuses[name][status] += 1

    threads = [threading.Thread(target=loop, args=(n, i)) for n in tokens for i in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_decoder_shares_follow_the_key_weights(server: Proc, env: dict[str, str]) -> None:
    tokens = {"w1": key(env, "decode-w1"), "w3": key(env, "decode-w3", "--weight", "3")}
    got = saturate(server, tokens, lambda name, n: SLOW + f"{name}-{n}".encode())
    assert set(got["w1"]) == {415} and set(got["w3"]) == {415}, got  # decoded, none refused
    light, heavy = got["w1"][415], got["w3"][415]
    assert light >= 2, got  # never starved
    assert heavy >= 2 * light, got  # about 3x at weights 3 and 1; 1x without weights


JPEGS = [jpeg(seed)[1] for seed in range(40)]


def test_batch_places_follow_the_key_weights(server: Proc, env: dict[str, str]) -> None:
    tokens = {"w1": key(env, "batch-w1"), "w3": key(env, "batch-w3", "--weight", "3")}
    got = saturate(server, tokens, lambda name, n: JPEGS[n % len(JPEGS)] + f"{name}-{n}".encode())
    assert set(got["w1"]) == {200} and set(got["w3"]) == {200}, got
    light, heavy = got["w1"][200], got["w3"][200]
    assert light >= 2, got
    assert heavy >= 2 * light, got


def test_a_lone_weighted_key_is_never_refused(server: Proc, env: dict[str, str]) -> None:
    got = saturate(server, {"lone": key(env, "lone", "--weight", "0.5")}, lambda name, n: SLOW + b"lone-%d" % n)
    assert set(got["lone"]) == {415} and got["lone"][415] >= 10, got
