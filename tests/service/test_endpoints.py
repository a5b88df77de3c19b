"""End to end against a real ``unirep serve``: every modality classifies and embeds real files; the service
endpoints, the error envelope, the result cache and /metrics behave as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import METRIC_NAMES
from service.settings import MODALITIES
from tests.service import media
from tests.service.server import Server, running, start

TIMING_HEADERS = ("X-Queue-Time-Ms", "X-Preprocess-Time-Ms", "X-Inference-Time-Ms", "X-Batch-Size", "X-Request-Id")
EXPECTED_CLASSES = {"image": 1000, "audio": 35, "video": 400, "pointcloud": 40, "timeseries": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("endpoints"), {}) as srv:
        yield srv


def post_file(client: httpx.Client, path: str, modality: str, seed: int = 0, **kwargs: object) -> httpx.Response:
    name, data = media.MEDIA[modality](seed)
    return client.post(path, files={"file": (name, data)}, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("modality", MODALITIES)
def test_classify_every_modality(server: Server, modality: str) -> None:
    with server.client() as client:
        response = post_file(client, f"/classify/{modality}", modality, params={"top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["modality"] == modality
    assert body["model"] == "unireplknet_a"
    assert body["weights"] == "random-init"
    assert len(body["predictions"]) == 2
    first, second = body["predictions"]
    assert 0 <= first["index"] < EXPECTED_CLASSES[modality]
    assert first["score"] >= second["score"]
    assert isinstance(first["label"], str) and first["label"]
    assert set(body["timings"]) == {"queue_ms", "preprocess_ms", "inference_ms", "total_ms"}
    assert body["batch_size"] >= 1
    for header in TIMING_HEADERS:
        assert header in response.headers
    assert int(response.headers["X-Batch-Size"]) == body["batch_size"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_embed_every_modality(server: Server, modality: str) -> None:
    with server.client() as client:
        response = post_file(client, f"/embed/{modality}", modality, seed=1)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == 320 == len(body["embedding"])
    assert "predictions" not in body
    assert all(isinstance(v, float) for v in body["embedding"])


def test_raw_body_and_json_bodies(server: Server) -> None:
    with server.client() as client:
        _, jpeg = media.jpeg(3)
        raw = client.post("/classify/image", content=jpeg, headers={"Content-Type": "image/jpeg"})
        series = client.post("/classify/timeseries", json=media.series(4))
        cloud = client.post("/embed/pointcloud", json={"points": [[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 1]] * 8})
        default_k = client.post("/classify/timeseries", json=media.series(5, timestamps=False))
    for response in (raw, series, cloud, default_k):
        assert response.status_code == 200, response.text
    assert len(raw.json()["predictions"]) == 5
    assert len(default_k.json()["predictions"]) == 2  # default top_k is capped by the class count


def test_result_cache_hits_on_identical_requests(server: Server) -> None:
    with server.client() as client:
        first = post_file(client, "/classify/image", "image", seed=77)
        second = post_file(client, "/classify/image", "image", seed=77)
        other_k = post_file(client, "/classify/image", "image", seed=77, params={"top_k": 3})
    assert first.headers["X-Cache"] == "miss"
    assert second.headers["X-Cache"] == "hit"
    assert other_k.headers["X-Cache"] == "miss"
    assert second.json()["predictions"] == first.json()["predictions"]
    assert server.metric("unirep_cache_hits_total", modality="image") >= 1


def test_models_health_ready_docs(server: Server) -> None:
    with server.client() as client:
        models = client.get("/models").json()["models"]
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/docs").status_code == 200
        openapi = client.get("/openapi.json").json()
    assert [m["modality"] for m in models] == list(MODALITIES)
    for entry in models:
        assert entry["weights"] == "random-init" and entry["weights_random"] is True
        assert entry["num_classes"] == EXPECTED_CLASSES[entry["modality"]]
        assert len(entry["input_shape"]) == 3
        assert entry["max_batch_size"] >= 1 and entry["max_delay_ms"] >= 0
    assert "multipart/form-data" in openapi["paths"]["/classify/{modality}"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/classify/smell", {"content": b"x"}, 404, "not_found"),
        ("get", "/classify/image", {}, 405, "method_not_allowed"),
        ("post", "/nowhere", {}, 404, "not_found"),
        ("post", "/classify/image?top_k=0", {"content": b"x"}, 422, "validation_error"),
        ("post", "/classify/image?top_k=1&top_k=2", {"content": b"x"}, 422, "invalid_parameter"),
        ("post", "/classify/image", {}, 422, "undecodable_input"),
        ("post", "/classify/image", {"json": {"a": 1}}, 415, "unsupported_media_type"),
        ("post", "/classify/image", {"files": {"other": ("a.jpg", b"x")}}, 422, "undecodable_input"),
        ("post", "/classify/image", {"content": b"\x89PNG\r\n\x1a\n broken"}, 422, "undecodable_input"),
        ("post", "/classify/audio", {"content": b"definitely not audio"}, 415, "unsupported_media_type"),
        ("post", "/classify/timeseries", {"json": {"data": [[1.0, 2.0]]}}, 422, "undecodable_input"),
        ("post", "/classify/timeseries", {"json": {"data": [[1.0, 2.0, 3.0]] * 5}}, 422, "undecodable_input"),
        (
            "post",
            "/classify/image",
            {"content": b"x", "headers": {"X-Request-Timeout-Ms": "soon"}},
            422,
            "invalid_parameter",
        ),
    ],
)
def test_errors_share_one_envelope(
    server: Server, method: str, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    with server.client() as client:
        response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert "X-Request-Id" in response.headers
    if "timeseries" in path and status == 422:  # the model's contract is named (the test server's takes 2 variables)
        message = error["message"]
        assert "this model" in message and ("expects 2" in message or "at least 2" in message)


def test_body_size_limit_is_enforced_while_reading(tmp_path: Path) -> None:
    settings = {
        "UNIREP_MAX_BODY_BYTES": "2000",
        "UNIREP_WARMUP": "false",
        "UNIREP_VIDEO__ENABLED": "false",
        "UNIREP_PREPROCESS_WORKERS": "1",
    }
    with running(tmp_path, settings) as small, small.client() as client:
        response = client.post("/classify/image", content=b"\xff" * 5000, headers={"Content-Type": "image/jpeg"})
        chunked = client.post("/classify/image", content=iter([b"\xff" * 1500] * 3))
        disabled = client.post("/classify/video", content=b"x")
    assert response.status_code == 413 and response.json()["error"]["code"] == "input_too_large"
    assert chunked.status_code == 413
    assert disabled.status_code == 404


def test_metrics_parse_and_carry_every_metric(server: Server) -> None:
    with server.client() as client:
        post_file(client, "/classify/image", "image", seed=9)
        text = client.get("/metrics").text
    families = {family.name for family in text_string_to_metric_families(text)}
    missing = [name for name in METRIC_NAMES if name not in families]
    assert not missing, missing
    assert server.metric("unirep_requests_total", modality="image", endpoint="classify", status="200") >= 1
    assert server.metric("unirep_worker_ready", device="cpu") == 1
    assert server.metric("unirep_ready") == 1
    assert server.metric("unirep_model_items_total", modality="image") >= 1
    assert server.metric("unirep_preprocess_duration_seconds_count", modality="image") >= 1


def test_a_checkpoint_that_cannot_load_stops_the_server(tmp_path: Path) -> None:
    settings = {"UNIREP_AUDIO__WEIGHTS": str(tmp_path / "missing.pth"), "UNIREP_WARMUP": "false"}
    with pytest.raises(RuntimeError, match="exited with 1") as info:
        start(tmp_path, settings)
    assert "weights file not found" in str(info.value)
