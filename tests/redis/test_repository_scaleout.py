"""The model repository under scale-out, with real processes: ``redis-server``, two ``unirep gateway`` (explicit
model control, one repository directory) and two ``unirep worker``, driven by the real ``tritonclient``.

In order, on one cluster: a model sent as files through gateway A answers through gateway B (V2 and the native
``?model=&version=``); a new version swaps in under concurrent inference with no failed request, no answer mixing
versions, and the new labels once the load returns; a version that cannot be read (refused by the gateway) or that
fails to build on the workers is reported with its reason while the serving one keeps serving; unload answers 404
through every gateway; a gateway with ``--model-control poll`` publishes its directory; a worker started after the
loads serves them alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from tests.redis.helpers import Proc, RedisServer, launch, stop, wait_ready
from tests.service import media
from tests.service.repository_models import version_file, write_image_model
from tests.service.server import IMAGE_ONLY, free_port

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

PETS_1 = ("cat", "dog")
PETS_2 = ("ant", "bee", "cow")
BIRDS = ("crow", "owl")
SETTINGS = {
    **IMAGE_ONLY,
    "UNIREP_CACHE_ENABLED": "false",  # every answer comes from a worker, by the version it names
    "UNIREP_REDIS_NAMESPACE": "reposcale",
    "UNIREP_WORKER_TTL_S": "3",
}


@dataclass
class Cluster:
    workdir: Path
    root: Path
    env: dict[str, str]
    gateways: list[Proc]
    workers: list[Proc]
    grpc_port: int

    def start_worker(self) -> Proc:
        proc = launch("worker", self.workdir, self.env)
        self.workers.append(proc)
        return proc

    def rest(self, gateway: int) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.gateways[gateway].url.removeprefix("http://"), network_timeout=300)


@pytest.fixture(scope="module")
def cluster(workdir: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("repository")
    write_image_model(version_file(root, "pets", 1), PETS_1, seed=1)
    (root / "pets" / "config.toml").write_text("max_batch_size = 4\n")
    env = {**SETTINGS, "UNIREP_REDIS_URL": redis_server.url}
    repository = {"UNIREP_MODEL_REPOSITORY": str(root), "UNIREP_MODEL_CONTROL": "explicit"}
    grpc_port = free_port()
    cluster = Cluster(workdir, root, env, [], [], grpc_port)
    try:
        cluster.start_worker()
        cluster.start_worker()
        loads_pets = {**repository, "UNIREP_LOAD_MODELS": json.dumps(["pets"]), "UNIREP_GRPC_PORT": str(grpc_port)}
        cluster.gateways.append(launch("gateway", workdir, {**env, **loads_pets}))
        cluster.gateways.append(launch("gateway", workdir, {**env, **repository}))
        wait_ready(*cluster.workers, *cluster.gateways)
        yield cluster
    finally:
        for proc in cluster.gateways + cluster.workers:
            stop(proc)


def classify(client: Any, model: str, seed: int, version: str = "") -> tuple[str, set[str]]:
    """(answering version, labels of the top classes) of one image through V2 REST."""
    tensor = httpclient.InferInput("FILE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([media.jpeg(seed)[1]], dtype=np.object_))
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=5)]
    result = client.infer(model, [tensor], outputs=wanted, model_version=version)
    rows = result.as_numpy("PROBABILITIES")[0]
    return result.get_response()["model_version"], {row.decode().split(":", 2)[2] for row in rows}


def index(client: Any) -> dict[tuple[str, str], dict[str, str]]:
    return {(e["name"], e["version"]): e for e in client.get_model_repository_index()}


def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Other gateways follow a change within their sync interval: wait for it, boundedly."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def test_a_model_loaded_through_one_gateway_answers_through_the_other(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.rest(0), cluster.rest(1)
    # Published by gateway A at start (--load-model); B routes it from its next sync on, which may come after both
    # gateways answer ready.
    eventually(lambda: b.is_model_ready("pets", "1"), what="B routes pets")
    assert classify(b, "pets", 1) == ("1", set(PETS_1))
    content = write_image_model(tmp_path / "model.safetensors", BIRDS, seed=3)
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{cluster.grpc_port}")  # gateway A's
    grpc.load_model("birds", config=json.dumps({"max_batch_size": 2}), files={"file:1/model.safetensors": content})
    assert classify(a, "birds", 5) == ("1", set(BIRDS))
    eventually(lambda: index(b).get(("birds", "1"), {}).get("state") == "READY", what="B lists birds READY")
    eventually(lambda: b.is_model_ready("birds", "1"), what="B routes birds")
    assert classify(b, "birds", 5) == ("1", set(BIRDS))
    assert b.get_model_metadata("birds")["versions"] == ["1"]
    with httpx.Client(base_url=cluster.gateways[1].url, timeout=120) as http:
        name, data = media.jpeg(5)
        answer = http.post("/classify/image?model=birds&version=1", files={"file": (name, data)})
        assert answer.status_code == 200, answer.text
        assert {p["label"] for p in answer.json()["predictions"]} == set(BIRDS)
        assert http.post("/classify/image?model=birds&version=2", files={"file": (name, data)}).status_code == 404
        listed = {(m["name"], m["model_version"]): m for m in http.get("/models").json()["models"]}
        assert listed[("birds", "1")]["max_batch_size"] == 2  # the load's config override
    over_grpc = {(m.name, m.version): m.state for m in grpc.get_model_repository_index().models}
    assert over_grpc[("birds", "1")] == "READY" and over_grpc[("image", "1")] == "READY"
    grpc.close()
    for client in (a, b):
        client.close()


def test_a_new_version_swaps_in_under_load_on_two_workers_without_failing_anyone(cluster: Cluster) -> None:
    write_image_model(version_file(cluster.root, "pets", 2), PETS_2, seed=2)
    answers: list[tuple[str, set[str]]] = []
    errors: list[BaseException] = []
    stop_event = threading.Event()

    def hammer(worker: int) -> None:
        client = cluster.rest(worker % 2)  # through both gateways: B follows A's switch within its sync
        seed = 100 * worker
        while not stop_event.is_set():
            seed += 1
            try:
                answers.append(classify(client, "pets", seed))
            except BaseException as exc:  # every failure is one to report
                errors.append(exc)
        client.close()

    rest = cluster.rest(0)
    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        rest.load_model("pets")  # the version policy (latest 1) now selects version 2
        after = classify(rest, "pets", 3)
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(120)
    assert errors == []
    assert after == ("2", set(PETS_2))
    assert "1" in {version for version, _ in answers}  # the load really overlapped the traffic
    for version, labels in answers:  # each answer wholly of the version it names
        assert labels <= (set(PETS_1) if version == "1" else set(PETS_2))
    for worker in cluster.workers:  # both workers built and warmed it before it was routed
        assert worker.metric("unirep_model_changes_total", model="pets", result="loaded") >= 2
    entries = index(cluster.rest(1))
    assert entries[("pets", "2")]["state"] == "READY"
    assert entries[("pets", "1")]["state"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException):
        classify(rest, "pets", 3, version="1")
    eventually(lambda: all("released pets version 1" in w.log.read_text() for w in cluster.workers), 60)
    rest.close()


def test_a_broken_version_fails_with_its_reason_and_the_serving_one_stays(cluster: Cluster) -> None:
    import torch

    from models.trained import TrainedModelInfo, save_trained_model

    rest = cluster.rest(0)
    unreadable = version_file(cluster.root, "pets", 3)
    unreadable.parent.mkdir(parents=True)
    unreadable.write_bytes(b"this is not a safetensors file")
    with pytest.raises(InferenceServerException) as refused:
        rest.load_model("pets")
    assert "version 3" in str(refused.value) and "cannot read" in str(refused.value)
    entry = index(cluster.rest(1))[("pets", "3")]
    assert entry["state"] == "UNAVAILABLE" and "cannot read" in entry["reason"]
    assert classify(rest, "pets", 4) == ("2", set(PETS_2))
    # Readable metadata, wrong tensors: only the workers' build finds out.
    info = TrainedModelInfo("image", "unireplknet_a", 3, PETS_1, {"input_size": 64}, created="broken")
    save_trained_model({"junk": torch.zeros(2)}, unreadable, info)
    with pytest.raises(InferenceServerException) as failed:
        rest.load_model("pets")
    assert "version 3" in str(failed.value) and "worker" in str(failed.value)
    entry = index(cluster.rest(1))[("pets", "3")]
    assert entry["state"] == "UNAVAILABLE" and "worker" in entry["reason"]
    assert classify(cluster.rest(1), "pets", 4) == ("2", set(PETS_2))
    (unreadable.parent / "model.safetensors").unlink()
    unreadable.parent.rmdir()
    rest.close()


def test_unload_answers_404_through_every_gateway(cluster: Cluster) -> None:
    a, b = cluster.rest(0), cluster.rest(1)
    b.unload_model("birds")
    with pytest.raises(InferenceServerException) as gone:
        classify(b, "birds", 5)
    assert "no model 'birds'" in str(gone.value)
    eventually(lambda: not a.is_model_ready("birds"), what="A stops routing birds")
    with httpx.Client(base_url=cluster.gateways[0].url, timeout=120) as http:
        name, data = media.jpeg(5)
        assert http.post("/classify/image?model=birds", files={"file": (name, data)}).status_code == 404
    assert index(a)[("birds", "1")]["state"] == "UNAVAILABLE"
    stored = redis.Redis.from_url(cluster.env["UNIREP_REDIS_URL"]).keys("reposcale:repository:file:*")
    assert len(stored) == 1  # pets 2's file; those of replaced, failed and unloaded versions are deleted
    with pytest.raises(InferenceServerException) as never:
        a.load_model("birds")  # it was never in the repository: only its files were
    assert "no model 'birds'" in str(never.value)
    with pytest.raises(InferenceServerException) as default:
        a.unload_model("image")
    assert "default model" in str(default.value)
    for client in (a, b):
        client.close()


def test_a_polling_gateway_publishes_its_directory(cluster: Cluster, tmp_path: Path) -> None:
    """``--model-control poll`` on a gateway: its folders are published, changes follow, a removed folder unloads."""
    import shutil

    write_image_model(version_file(tmp_path, "fish", 1), ("cod", "eel"), seed=6)
    polling = {
        "UNIREP_MODEL_REPOSITORY": str(tmp_path),
        "UNIREP_MODEL_CONTROL": "poll",
        "UNIREP_REPOSITORY_POLL_S": "1",
    }
    gateway = launch("gateway", cluster.workdir, {**cluster.env, **polling})
    a = cluster.rest(0)
    try:
        wait_ready(gateway)
        eventually(lambda: a.is_model_ready("fish", "1"), what="A routes what the polling gateway published")
        assert classify(a, "fish", 9) == ("1", {"cod", "eel"})
        write_image_model(version_file(tmp_path, "fish", 2), ("ray", "koi", "gar"), seed=7)
        eventually(lambda: a.is_model_ready("fish", "2"), 60, "the new version is published")
        assert classify(a, "fish", 9) == ("2", {"ray", "koi", "gar"})
        shutil.rmtree(tmp_path / "fish")
        eventually(lambda: not a.is_model_ready("fish"), 60, "the removed folder is unloaded")
        assert index(a)[("fish", "2")]["state"] == "UNAVAILABLE"
    finally:
        stop(gateway)
        a.close()


def test_a_worker_started_after_the_loads_serves_them(cluster: Cluster) -> None:
    late = cluster.start_worker()
    wait_ready(late)
    eventually(lambda: late.metric("unirep_model_changes_total", model="pets", result="loaded") >= 1, 120)
    for worker in cluster.workers[:2]:
        stop(worker)
    rest = cluster.rest(1)
    eventually(lambda: rest.is_server_ready(), 30, "the gateway sees the late worker")
    assert classify(rest, "pets", 8) == ("2", set(PETS_2))
    assert late.metric("unirep_batches_total", modality="pets/2") >= 1
    rest.close()
