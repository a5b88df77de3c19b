"""Scale-out with real processes: ``redis-server``, two ``unirep gateway`` and two ``unirep worker`` processes.

Every modality is served, from weights files written here (so every worker computes the same answers), with the
cache off (so every request reaches a worker). The tests run in order on one cluster: mixed load answered
correctly by both workers; ``kill -9`` of a worker mid-load (every request answered, by reclaim, or 503 within
its deadline; none hangs, none answered twice); a restarted worker rejoins; Redis going away answers 503 at once
and the cluster recovers when it returns.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from tests.redis.helpers import (
    Proc,
    RedisServer,
    kill9,
    launch,
    settings_from_env,
    stop,
    wait_ready,
    write_checkpoints,
)
from tests.service.media import MEDIA

MODALITIES = ("image", "audio", "video", "pointcloud", "timeseries")
DEADLINE_MS = 20_000
SETTINGS = {
    "UNIREP_CACHE_ENABLED": "false",
    "UNIREP_STREAM_CLAIM_IDLE_MS": "1500",
    "UNIREP_WORKER_TTL_S": "2",
    "UNIREP_REDIS_RETRY_S": "0.5",
    "UNIREP_IMAGE__MAX_BATCH_SIZE": "8",
    "UNIREP_AUDIO__MAX_BATCH_SIZE": "8",
    "UNIREP_POINTCLOUD__MAX_BATCH_SIZE": "8",
    "UNIREP_TIMESERIES__MAX_BATCH_SIZE": "8",
}
WORKER_SETTINGS = {"UNIREP_DEBUG_INFERENCE_DELAY_MS": "60"}
"""Batches take a while, so a worker killed under load is almost surely holding one."""


@dataclass
class Cluster:
    workdir: Path
    env: dict[str, str]
    redis: RedisServer
    gateways: list[Proc]
    workers: list[Proc]

    def start_worker(self) -> Proc:
        proc = launch("worker", self.workdir, {**self.env, **WORKER_SETTINGS})
        self.workers.append(proc)
        return proc


@pytest.fixture(scope="module")
def cluster(workdir: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    weights = write_checkpoints(workdir, SETTINGS, MODALITIES)
    env = {**SETTINGS, **weights, "UNIREP_REDIS_URL": redis_server.url}
    cluster = Cluster(workdir, env, redis_server, [], [])
    try:
        for _ in range(2):
            cluster.start_worker()
            cluster.gateways.append(launch("gateway", workdir, env))
        wait_ready(*cluster.workers, *cluster.gateways)
        yield cluster
    finally:
        for proc in cluster.gateways + cluster.workers:
            stop(proc)


def payload(modality: str, seed: int) -> tuple[str, bytes]:
    name, data = MEDIA[modality](seed)
    return name, data


def send(gateway: Proc, modality: str, seed: int, timeout_ms: int = DEADLINE_MS) -> tuple[int, float, dict[str, Any]]:
    """(status, seconds, JSON body) of one classification, with the deadline header."""
    name, data = payload(modality, seed)
    started = time.monotonic()
    response = httpx.post(
        f"{gateway.url}/classify/{modality}",
        files={"file": (name, data)},
        headers={"X-Request-Timeout-Ms": str(timeout_ms)},
        timeout=timeout_ms / 1000 + 30,  # a hang shows as an exception here, well past the deadline
    )
    return response.status_code, time.monotonic() - started, response.json()


def reference(cluster: Cluster, modality: str, seed: int) -> list[tuple[int, float]]:
    """The same weights and preprocessing in this process, through the same DeviceWorker code, batch of one."""
    from modality_adapters import get_adapter
    from servable.build import build_served_model
    from service.runtime.device_worker import DeviceWorker
    from service.runtime.work import Batch, BatchItem

    cfg = settings_from_env(cluster.env).modality(modality)
    adapter = get_adapter(modality)
    served = build_served_model(cfg, adapter)
    name, data = payload(modality, seed)
    hints = {"format": name.rsplit(".", 1)[-1]} if modality == "pointcloud" else {}
    tensor = adapter.decode(data, **{**served.params, **hints})
    worker = DeviceWorker(torch.device("cpu"), {modality: served}, "fp32", warmup_enabled=False)
    item = BatchItem("ref", tensor, "classify", 5, time.time())
    result = worker.execute(Batch(modality, served.input_shape, [item], 1))
    assert result.items[0].scores is not None
    return result.items[0].scores


def scores(body: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["index"], p["score"]) for p in body["predictions"]]


def close(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return [i for i, _ in a] == [i for i, _ in b] and all(
        abs(x - y) < 1e-4 for (_, x), (_, y) in zip(a, b, strict=True)
    )


def total(procs: list[Proc], name: str, **labels: str) -> float:
    return sum(p.metric(name, **labels) for p in procs if p.process.poll() is None)


def test_200_mixed_requests_are_answered_correctly_by_both_workers(cluster: Cluster) -> None:
    jobs = [(m, seed) for m in MODALITIES for seed in range(8)] * 5
    random.Random(0).shuffle(jobs)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda ij: send(cluster.gateways[ij[0] % 2], *ij[1]), enumerate(jobs)))
    assert [status for status, _, _ in answers] == [200] * 200, [b for s, _, b in answers if s != 200][:3]
    by_payload: dict[tuple[str, int], list[list[tuple[int, float]]]] = {}
    for (modality, seed), (_, _, body) in zip(jobs, answers, strict=True):
        assert body["modality"] == modality and body["weights"].endswith(f"{modality}.pt")
        by_payload.setdefault((modality, seed), []).append(scores(body))
    for key, results in by_payload.items():
        assert all(close(r, results[0]) for r in results), key  # same answer whichever gateway and worker
    for modality in MODALITIES:
        assert close(by_payload[(modality, 0)][0], reference(cluster, modality, 0)), modality
    for worker in cluster.workers:
        assert worker.metric("unirep_model_items_total") > 0, "a worker took no work"
    assert total(cluster.gateways, "unirep_stream_late_replies_total") == 0


def holds_a_batch(redis_url: str, pid: int, timeout: float) -> bool:
    """Wait until the worker process ``pid`` has a batch pending (read, not acknowledged) in some model stream,
    so that killing it is sure to leave work for the survivor to reclaim."""
    import redis

    client = redis.Redis.from_url(redis_url)
    marker = f"-{pid}-"
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            for key in client.scan_iter(_type="STREAM"):
                try:
                    pending = client.xpending_range(key, "workers", "-", "+", 100)
                except redis.ResponseError:  # a reply stream: no consumer group
                    continue
                if any(marker in entry["consumer"].decode() for entry in pending):
                    return True
            time.sleep(0.01)
        return False
    finally:
        client.close()


def test_kill_9_of_a_worker_mid_load_answers_every_request_once(cluster: Cluster) -> None:
    jobs = [(MODALITIES[i % 5], 1000 + i) for i in range(120)]
    answered: list[tuple[int, float, dict[str, Any]]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def run(index: int) -> tuple[int, float, dict[str, Any]]:
        outcome = send(cluster.gateways[index % 2], *jobs[index])
        with lock:
            answered.append(outcome)
            if len(answered) >= 20:
                enough.set()
        return outcome

    victim = cluster.workers[0]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(run, i) for i in range(len(jobs))]
        assert enough.wait(120)
        assert holds_a_batch(cluster.redis.url, victim.process.pid, timeout=30), "the victim never held a batch"
        kill9(victim)
        outcomes = [f.result() for f in futures]  # raises if any request hung past its client timeout
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 503}, [b for s, _, b in outcomes if s not in (200, 503)][:3]
    for status, seconds, body in outcomes:
        if status == 503:
            assert seconds < DEADLINE_MS / 1000, body
            assert body["error"]["code"] == "service_unavailable"
    assert statuses.count(200) >= 100, statuses
    survivor = cluster.workers[1]
    assert survivor.metric("unirep_stream_reclaimed_batches_total") >= 1, "nothing was taken over from the dead worker"
    assert total(cluster.gateways, "unirep_stream_late_replies_total") == 0  # no request answered twice
    cluster.workers.remove(victim)


def test_a_restarted_worker_rejoins_and_takes_work(cluster: Cluster) -> None:
    fresh = cluster.start_worker()
    wait_ready(fresh)
    deadline = time.monotonic() + 60  # generous: a loaded CI machine restarts slowly
    while time.monotonic() < deadline and fresh.metric("unirep_model_items_total") == 0:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda i: send(cluster.gateways[i % 2], MODALITIES[i % 5], 2000 + i), range(24)))
        assert all(status == 200 for status, _, _ in outcomes)
    assert fresh.metric("unirep_model_items_total") > 0
    assert all(g.metric("unirep_stream_workers", modality="image") == 2 for g in cluster.gateways)


def test_redis_going_away_fails_fast_with_503_and_the_cluster_recovers(cluster: Cluster) -> None:
    gateway = cluster.gateways[0]
    cluster.redis.stop()
    try:
        status, seconds, body = send(gateway, "image", 3000)
        assert status == 503 and seconds < 3, (status, seconds, body)
        assert "Redis" in body["error"]["message"]
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
        assert ready.status_code == 503 and "Redis" in ready.json()["error"]["message"]
    finally:
        cluster.redis.start()  # empty: the workers re-announce and recreate their consumer groups
    deadline = time.monotonic() + 60  # generous: a loaded CI machine restarts slowly
    while time.monotonic() < deadline and not all(g.ready() for g in cluster.gateways):
        time.sleep(0.2)
    assert all(g.ready() for g in cluster.gateways)
    for i, g in enumerate(cluster.gateways):
        status, _, body = send(g, MODALITIES[i], 3001 + i)
        assert status == 200, body
