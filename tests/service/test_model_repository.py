"""The model repository and its extension of the Open Inference Protocol, driven by the real ``tritonclient``
(HTTP and gRPC) against a real ``unirep serve`` with ``--model-control explicit``: the index, a new version loaded
under concurrent inference (no failed request, no answer mixing versions, the new labels once the load returns),
a broken version that fails while the old one keeps serving, a model sent as files in the load request, unload,
and the native routes' ``?model=&version=``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service import media
from tests.service.repository_models import version_file, write_image_model
from tests.service.server import IMAGE_ONLY, Server, free_port, running
from tests.service.test_page_and_preview import CHROMIUM, CHROMIUM_ARGS

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

PETS_1 = ("cat", "dog")
PETS_2 = ("ant", "bee", "cow")
BIRDS = ("crow", "owl")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    write_image_model(version_file(root, "pets", 1), PETS_1, seed=1)
    (root / "pets" / "config.toml").write_text("max_batch_size = 4\n")
    write_image_model(version_file(root, "spare", 1), ("x", "y"), seed=5)  # in the repository, not loaded
    return root


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's TMPDIR: where the files sent in load requests are kept while needed."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, repository: Path, server_tmp: Path
) -> Iterator[tuple[Server, int]]:
    port = free_port()
    settings = {
        "TMPDIR": str(server_tmp),
        **IMAGE_ONLY,
        "UNIREP_GRPC_PORT": str(port),
        "UNIREP_MODEL_REPOSITORY": str(repository),
        "UNIREP_MODEL_CONTROL": "explicit",
        "UNIREP_LOAD_MODELS": json.dumps(["pets"]),
    }
    with running(tmp_path_factory.mktemp("repo-serve"), settings) as srv:
        yield srv, port


@pytest.fixture(scope="module")
def rest(served: tuple[Server, int]) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(served[0].url.removeprefix("http://"), network_timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(served: tuple[Server, int]) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served[1]}")
    yield client
    client.close()


def classify(
    client: httpclient.InferenceServerClient, model: str, seed: int, version: str = ""
) -> tuple[str, set[str]]:
    """(answering version, labels of the top classes) of one image through V2 REST."""
    tensor = httpclient.InferInput("FILE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([media.jpeg(seed)[1]], dtype=np.object_))
    wanted = [httpclient.InferRequestedOutput("PROBABILITIES", class_count=5)]
    result = client.infer(model, [tensor], outputs=wanted, model_version=version)
    rows = result.as_numpy("PROBABILITIES")[0]
    return result.get_response()["model_version"], {row.decode().split(":", 2)[2] for row in rows}


def index(client: httpclient.InferenceServerClient) -> dict[tuple[str, str], dict[str, str]]:
    return {(e["name"], e["version"]): e for e in client.get_model_repository_index()}


def test_index_lists_defaults_loaded_and_unloaded_models(
    rest: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    entries = index(rest)
    assert entries[("image", "1")]["state"] == "READY"
    assert entries[("pets", "1")]["state"] == "READY"
    assert entries[("spare", "")]["state"] == "UNAVAILABLE"
    over_grpc = {(m.name, m.version): m.state for m in grpc.get_model_repository_index().models}
    assert over_grpc == {key: e["state"] for key, e in entries.items()}
    assert [e["name"] for e in rest.get_model_repository_index()] == [n for n, _ in sorted(entries)]


def test_a_loaded_model_answers_v2_and_native_routes(
    served: tuple[Server, int], rest: httpclient.InferenceServerClient
) -> None:
    assert rest.is_model_ready("pets") and rest.is_model_ready("pets", "1")
    assert classify(rest, "pets", 3) == ("1", set(PETS_1))
    assert rest.get_model_metadata("pets")["versions"] == ["1"]
    with httpx.Client(base_url=served[0].url, timeout=120) as http:
        name, data = media.jpeg(3)
        answer = http.post("/classify/image?model=pets&version=1", files={"file": (name, data)})
        assert answer.status_code == 200, answer.text
        assert {p["label"] for p in answer.json()["predictions"]} == set(PETS_1)
        default = http.post("/classify/image", files={"file": (name, data)}).json()
        assert len(default["predictions"]) == 5  # the default model: 1000 ImageNet-sized random classes
        assert http.post("/classify/image?model=pets&version=7", files={"file": (name, data)}).status_code == 404
        listed = {(m["name"], m["model_version"]): m for m in http.get("/models").json()["models"]}
        assert listed[("pets", "1")]["state"] == "READY" and listed[("pets", "1")]["num_classes"] == 2
        assert listed[("pets", "1")]["max_batch_size"] == 4  # the model's config.toml
        assert listed[("spare", None)] == {
            "name": "spare",
            "model_version": None,
            "state": "UNAVAILABLE",
            "reason": "not loaded",
        }
        assert listed[("image", "1")]["state"] == "READY" and "reason" not in listed[("image", "1")]
    with pytest.raises(InferenceServerException) as missing:
        rest.get_model_metadata("pets", "7")
    assert "no version" in str(missing.value)


def test_a_new_version_swaps_in_under_load_without_failing_anyone(
    served: tuple[Server, int], repository: Path, rest: httpclient.InferenceServerClient
) -> None:
    write_image_model(version_file(repository, "pets", 2), PETS_2, seed=2)
    answers: list[tuple[str, set[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        client = httpclient.InferenceServerClient(rest._parsed_url.netloc, network_timeout=300)
        seed = 100 * worker
        while not stop.is_set():
            seed += 1
            try:
                answers.append(classify(client, "pets", seed))
            except BaseException as exc:  # every failure is one to report
                errors.append(exc)
        client.close()

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    try:
        rest.load_model("pets")  # the version policy (latest 1) now selects version 2
        after = classify(rest, "pets", 3)  # answered by version 1 (and cached) before: the cache keys on the weights
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert errors == []
    assert after == ("2", set(PETS_2))
    versions = {version for version, _ in answers}
    assert "1" in versions  # the load really overlapped the traffic
    for version, labels in answers:  # each answer wholly of the version it names
        assert labels <= (set(PETS_1) if version == "1" else set(PETS_2))
    rest.load_model("pets", config=json.dumps({"version_policy": {"all": {}}}))  # both versions, side by side
    assert rest.get_model_metadata("pets")["versions"] == ["1", "2"]
    assert classify(rest, "pets", 3, version="1") == ("1", set(PETS_1))
    assert classify(rest, "pets", 3) == ("2", set(PETS_2))  # no version: the highest
    rest.load_model("pets")  # the config.toml's policy again: the latest alone
    assert rest.get_model_metadata("pets")["versions"] == ["2"]
    entries = index(rest)
    assert entries[("pets", "2")]["state"] == "READY"
    assert entries[("pets", "1")]["state"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException):
        classify(rest, "pets", 3, version="1")
    answered = served[0].metric("unirep_requests_total", modality="image", endpoint="v2_infer", status="200")
    assert answered >= len(answers)  # a repository model's requests count under the modality it takes
    assert served[0].metric("unirep_model_changes_total", model="pets", result="loaded") >= 2
    assert served[0].metric("unirep_model_changes_total", model="pets", result="unloaded") >= 1
    assert served[0].metric("unirep_model_load_duration_seconds_count", model="pets") >= 2
    deadline = time.monotonic() + 60  # the replaced version is released once its requests are answered
    while "released pets version 1" not in served[0].log.read_text(errors="replace"):
        assert time.monotonic() < deadline, served[0].log_tail()
        time.sleep(0.2)


def test_a_broken_version_fails_and_the_serving_one_stays(
    served: tuple[Server, int], repository: Path, rest: httpclient.InferenceServerClient
) -> None:
    broken = version_file(repository, "pets", 3)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not a safetensors file")
    try:
        with pytest.raises(InferenceServerException) as failed:
            rest.load_model("pets")
        assert "version 3" in str(failed.value)
        assert served[0].metric("unirep_model_changes_total", model="pets", result="failed") == 1
        entry = index(rest)[("pets", "3")]
        assert entry["state"] == "UNAVAILABLE" and "cannot read" in entry["reason"]
        with served[0].client() as http:
            listed = {(m["name"], m["model_version"]): m for m in http.get("/models").json()["models"]}
        assert listed[("pets", "3")]["state"] == "UNAVAILABLE" and listed[("pets", "3")]["reason"] == entry["reason"]
        assert listed[("pets", "2")]["state"] == "READY" and listed[("pets", "2")]["modality"] == "image"
        assert classify(rest, "pets", 4) == ("2", set(PETS_2))
    finally:
        shutil.rmtree(broken.parent)


def test_load_with_files_in_the_request_then_unload(
    tmp_path: Path,
    served: tuple[Server, int],
    server_tmp: Path,
    rest: httpclient.InferenceServerClient,
    grpc: grpcclient.InferenceServerClient,
) -> None:
    content = write_image_model(tmp_path / "model.safetensors", BIRDS, seed=3)
    grpc.load_model("birds", config=json.dumps({"max_batch_size": 2}), files={"file:1/model.safetensors": content})
    grpc.load_model("birds", config=json.dumps({"max_batch_size": 2}), files={"file:1/model.safetensors": content})
    assert len(list(server_tmp.glob("unirep-uploads-*/birds-*"))) == 1  # a reload's files replace the previous
    with pytest.raises(InferenceServerException):
        grpc.load_model("birds", files={"file:1/model.safetensors": b"not a model"})
    assert len(list(server_tmp.glob("unirep-uploads-*/birds-*"))) == 1  # a failed load keeps nothing
    assert grpc.is_model_ready("birds")
    assert classify(rest, "birds", 5) == ("1", set(BIRDS))
    grpc.unload_model("birds")
    assert list(server_tmp.glob("unirep-uploads-*/birds-*")) == []
    with pytest.raises(InferenceServerException) as gone:
        grpc.get_model_metadata("birds")
    assert gone.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as gone_rest:
        classify(rest, "birds", 5)
    assert "no model 'birds'" in str(gone_rest.value)
    assert index(rest)[("birds", "1")]["state"] == "UNAVAILABLE"
    with served[0].client() as http:
        (birds,) = [m for m in http.get("/models").json()["models"] if m["name"] == "birds"]
    assert birds["state"] == "UNAVAILABLE" and birds["model_version"] == "1" and "modality" not in birds
    assert birds["reason"] == index(rest)[("birds", "1")]["reason"]


def test_load_over_rest_with_files_and_a_config_override(
    tmp_path: Path, rest: httpclient.InferenceServerClient
) -> None:
    content = write_image_model(tmp_path / "model.safetensors", ("red", "blue"), seed=4)
    config = {"version_policy": {"specific": {"versions": [4]}}}
    rest.load_model("colors", config=json.dumps(config), files={"file:4/model.safetensors": content})
    assert classify(rest, "colors", 6) == ("4", {"red", "blue"})
    rest.unload_model("colors")
    with pytest.raises(InferenceServerException) as gone:
        rest.load_model("colors")  # it was never in the repository: only its files were
    assert "no model 'colors'" in str(gone.value)
    with pytest.raises(InferenceServerException) as bad:
        rest.load_model("pets", config=json.dumps({"max_batch_size": "many"}))
    assert "max_batch_size" in str(bad.value)
    assert classify(rest, "pets", 7)[1] <= set(PETS_2)


def test_default_models_and_unknown_names_are_refused(rest: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as default:
        rest.unload_model("image")
    assert "default model" in str(default.value)
    with pytest.raises(InferenceServerException) as unknown:
        rest.load_model("nothing-here")
    assert "no model 'nothing-here'" in str(unknown.value)
    assert rest.is_model_ready("image")


def test_sdk_and_cli_manage_and_address_models(served: tuple[Server, int], tmp_path: Path) -> None:
    from unirep_client import BadRequestError, Client, NotFoundError

    content = write_image_model(tmp_path / "model.safetensors", ("left", "right"), seed=6)
    with Client(served[0].url, timeout=300) as client:
        client.load_model("sides", config={"max_batch_size": 2}, files={"3/model.safetensors": content})
        assert ("sides", "3", "READY") in {(e.name, e.version, e.state) for e in client.repository_index(ready=True)}
        picked = client.classify("image", media.jpeg(8)[1], model="sides", version=3)
        assert {p.label for p in picked.predictions} == {"left", "right"}
        assert len(client.embed("image", media.jpeg(8)[1], model="sides").embedding) > 0
        listed = {(m.name, m.model_version, m.state) for m in client.models()}
        assert ("sides", "3", "READY") in listed and ("image", "1", "READY") in listed
        spare = next(m for m in client.models() if m.name == "spare")
        assert (spare.state, spare.reason, spare.modality, spare.model_version) == (
            "UNAVAILABLE",
            "not loaded",
            None,
            None,
        )
        with pytest.raises(BadRequestError, match="default model"):
            client.unload_model("image")
        cli = [sys.executable, "-m", "service.cli"]
        env = {**os.environ, "UNIREP_URL": served[0].url}
        shown = subprocess.run([*cli, "repository", "index", "--json"], env=env, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert {"name": "sides", "version": "3", "state": "READY", "reason": ""} in map(
            json.loads, shown.stdout.splitlines()
        )
        image = tmp_path / "a.jpg"
        image.write_bytes(media.jpeg(9)[1])
        done = subprocess.run(
            [*cli, "classify", "image", str(image), "--model", "sides", "--json", "--no-progress"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        labels = {p["label"] for p in json.loads(done.stdout)["result"]["predictions"]}
        assert labels == {"left", "right"}
        gone = subprocess.run([*cli, "repository", "unload", "sides"], env=env, capture_output=True, text=True)
        assert gone.returncode == 0, gone.stderr
        with pytest.raises(NotFoundError):
            client.classify("image", media.jpeg(8)[1], model="sides")


def test_the_page_lets_the_user_pick_a_loaded_model(served: tuple[Server, int]) -> None:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no system chromium (apt-get install chromium)")
    with playwright_sync.sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = chrome.new_page()
        page.goto(served[0].url + "/")
        page.wait_for_selector("#model option", state="attached")
        options = page.locator("#model option").all_inner_texts()
        assert options[0].startswith("default") and any(o.startswith("pets v") for o in options)
        assert page.locator("#modality option").all_inner_texts()[0].startswith("image")  # one entry per modality
        page.select_option("#model", label=next(o for o in options if o.startswith("pets v")))
        name, data = media.jpeg(11)
        page.set_input_files("#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
        page.click("#run")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        labels = {text.split(" (#")[0] for text in page.locator("#predictions li .label").all_inner_texts()}
        assert labels <= set(PETS_1) | set(PETS_2) and labels
        chrome.close()


def test_metrics_name_model_versions_not_loads(
    served: tuple[Server, int], rest: httpclient.InferenceServerClient
) -> None:
    """Reloading a version installs it under a new serving key; its metric series must stay those of the version."""
    for _ in range(2):
        rest.load_model("pets")
        classify(rest, "pets", 11)
    text = httpx.get(f"{served[0].url}/metrics", timeout=60).text
    labelled = [line.split("{", 1)[1] for line in text.splitlines() if line.startswith("unirep_") and "{" in line]
    assert not [labels for labels in labelled if "#" in labels]
    batches = [line for line in text.splitlines() if line.startswith("unirep_batches_total{")]
    assert any('modality="pets/' in line for line in batches), batches


def _door_statuses(server: Server, door: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for (name, labels), value in server.samples().items():
        table = dict(labels)
        if name == "unirep_requests_total" and table.get("endpoint") == door:
            out[table["status"]] = out.get(table["status"], 0) + int(value)
    return out


def _new(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {status: n - before.get(status, 0) for status, n in after.items() if n != before.get(status, 0)}


def test_repository_routes_count_the_status_their_caller_saw(
    served: tuple[Server, int], grpc: grpcclient.InferenceServerClient
) -> None:
    """The repository routes pass the front door like inference does: every answer is counted once, on its own
    endpoint, with the status the caller got (REST and gRPC); none of them counts as inference in flight."""
    server = served[0]
    calls = {
        "repository_index": [("/v2/repository/index", b"{}"), ("/v2/repository/index", b"{not json")],
        "repository_load": [("/v2/repository/models/nothing-here/load", b"{}")],
        "repository_unload": [
            ("/v2/repository/models/image/unload", b"{}"),
            ("/v2/repository/models/pets/unload", b'{"parameters": 3}'),
        ],
    }
    with server.client() as client:
        for door, requests in calls.items():
            before = _door_statuses(server, door)
            seen: dict[str, int] = {}
            for path, body in requests:
                status = str(client.post(path, content=body, headers={"Content-Type": "application/json"}).status_code)
                seen[status] = seen.get(status, 0) + 1
            assert _new(_door_statuses(server, door), before) == seen, door
    assert seen == {"400": 2}  # a default model cannot be unloaded; parameters must be an object
    before = _door_statuses(server, "grpc_repository_load")
    grpc.get_model_repository_index()
    with pytest.raises(InferenceServerException, match="nothing-here"):
        grpc.load_model("nothing-here")
    assert _door_statuses(server, "grpc_repository_index").get("200", 0) >= 1
    assert _new(_door_statuses(server, "grpc_repository_load"), before) == {"404": 1}
    assert server.metric("unirep_in_flight_requests") == 0
