"""``--model-control poll``: a model folder added to the repository is loaded without any call, a new version
replaces the old, a removed folder is unloaded; the API may read the index but not load or unload."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.media import jpeg
from tests.service.repository_models import version_file, write_image_model
from tests.service.server import IMAGE_ONLY, Server, running


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repository")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[Server]:
    settings = {
        **IMAGE_ONLY,
        "UNIREP_MODEL_REPOSITORY": str(repository),
        "UNIREP_MODEL_CONTROL": "poll",
        "UNIREP_REPOSITORY_POLL_S": "0.3",
    }
    with running(tmp_path_factory.mktemp("poll-serve"), settings) as srv:
        yield srv


def publish(repository: Path, name: str, version: int, labels: tuple[str, ...], seed: int) -> None:
    """Write the file beside its folder, then move it in: the poller never sees half a file."""
    staging = repository.parent / f"staging-{name}-{version}.safetensors"
    write_image_model(staging, labels, seed)
    target = version_file(repository, name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the repository change was not applied in time"
        time.sleep(0.2)


def labels_of(http: httpx.Client, name: str) -> set[str] | None:
    _, data = jpeg(5)
    answer = http.post(f"/classify/image?model={name}", files={"file": ("a.jpg", data)})
    return {p["label"] for p in answer.json()["predictions"]} if answer.status_code == 200 else None


def test_poll_loads_new_folders_and_versions_and_unloads_removed_ones(served: Server, repository: Path) -> None:
    with served.client() as http:
        assert labels_of(http, "late") is None
        publish(repository, "late", 1, ("sun", "moon"), seed=1)
        eventually(lambda: labels_of(http, "late") == {"sun", "moon"})
        publish(repository, "late", 2, ("tea", "milk"), seed=2)
        eventually(lambda: labels_of(http, "late") == {"tea", "milk"})
        index = {(e["name"], e["version"]): e["state"] for e in http.post("/v2/repository/index").json()}
        assert index[("late", "2")] == "READY" and index[("late", "1")] == "UNAVAILABLE"
        refused = http.post("/v2/repository/models/late/unload", json={})
        assert refused.status_code == 400 and "explicit" in refused.json()["error"]
        shutil.rmtree(repository / "late")
        eventually(lambda: http.get("/v2/models/late").status_code == 404)
