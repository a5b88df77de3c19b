"""A real ``unirep serve`` on the ``auto`` backend: the measured choice and its medians are reported in
``/models``, the log and the ``unirep_backend_info`` metric; a restart reuses the remembered choice (no measuring)
and its exported graph from the cache, and answers identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import create_model
from service.runtime.backends import AUTO_ORDER, SPECS
from tests.service.media import jpeg
from tests.service.server import running

INSTALLED = [n for n in AUTO_ORDER["cpu"] if SPECS[n].unavailable_reason("cpu") is None]
pytestmark = pytest.mark.skipif(INSTALLED == ["torch"], reason="no compiled CPU backend (openvino, onnxruntime)")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("backends-served")
    torch.manual_seed(11)
    checkpoint = root / "image_a.pth"
    torch.save(create_model("unireplknet_a").state_dict(), checkpoint)
    env = {f"UNIREP_{m.upper()}__ENABLED": "false" for m in ("audio", "video", "pointcloud", "timeseries")}
    env.update(
        {
            "UNIREP_IMAGE__WEIGHTS": str(checkpoint),
            "UNIREP_IMAGE__BACKEND": "auto",
            "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": 64}),
            "UNIREP_IMAGE__MAX_BATCH_SIZE": "4",
            "UNIREP_BACKEND_CACHE_DIR": str(root / "cache"),
        }
    )
    return env


def classify(server_url: str, payload: bytes) -> list[dict[str, object]]:
    import httpx

    response = httpx.post(
        f"{server_url}/classify/image?top_k=5", content=payload, headers={"Content-Type": "image/jpeg"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert float(response.headers["X-Inference-Time-Ms"]) > 0
    predictions: list[dict[str, object]] = response.json()["predictions"]
    return predictions


def test_auto_backend_is_reported_and_its_export_survives_a_restart(tmp_path: Path, settings: dict[str, str]) -> None:
    _, payload = jpeg(5)
    with running(tmp_path, settings) as server:
        (model,) = server.client().get("/models").json()["models"]
        chosen = model["backend"]
        assert chosen in INSTALLED
        assert model["backend_note"].startswith("auto on cpu: fastest of median")
        assert all(f"{name} " in model["backend_note"] for name in INSTALLED)
        assert server.metric("unirep_backend_info", modality="image", device="cpu", backend=chosen) == 1
        log = server.log_tail(100_000)
        assert f"[image] backend {chosen} on cpu (auto on cpu: fastest of median" in log
        assert "auto on cpu for 3x64x64: medians" in log and f"chose {chosen}" in log
        first = classify(server.url, payload)
    cache = Path(settings["UNIREP_BACKEND_CACHE_DIR"])
    exported = [p for p in cache.iterdir() if p.is_dir()]
    assert len(exported) == len(INSTALLED) - 1 and (cache / "auto-choices.json").is_file()  # each compiled one
    with running(tmp_path, settings) as server:
        (model,) = server.client().get("/models").json()["models"]
        assert model["backend"] == chosen and "remembered" in model["backend_note"]
        log = server.log_tail(100_000)
        assert "medians" in log and "): chose " not in log and "exported" not in log
        assert ("export cache hit" in log) == (chosen != "torch")
        second = classify(server.url, payload)
    assert [p["index"] for p in second] == [p["index"] for p in first]
    for a, b in zip(first, second, strict=True):
        assert abs(float(a["score"]) - float(b["score"])) <= 1e-5  # type: ignore[arg-type]
