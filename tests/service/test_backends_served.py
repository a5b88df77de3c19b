"""A real ``unirep serve`` on the ``auto`` backend: it serves the first preferred candidate at once, measures the
others once ready, and reports the measured choice and its medians in ``/models``, the log and the
``unirep_backend_info`` metric; a restart reuses the remembered choice (no measuring)
and its exported graph from the cache, and answers identically."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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


def measured_model(server: Any, timeout: float = 120.0) -> dict[str, Any]:
    """``/models``' entry once the background measurement has reported (its note then carries the medians)."""
    end = time.monotonic() + timeout
    while True:
        (model,) = server.client().get("/models").json()["models"]
        if model["backend_note"].startswith("auto on cpu: fastest of median") or time.monotonic() > end:
            return dict(model)
        time.sleep(0.2)


def test_auto_backend_is_reported_and_its_export_survives_a_restart(tmp_path: Path, settings: dict[str, str]) -> None:
    _, payload = jpeg(5)
    with running(tmp_path, settings) as server:
        log = server.log_tail(100_000)
        first_choice = "torch"  # eager served at once (no export to wait for); the others measured once ready
        assert "[image] backend torch on cpu (auto on cpu: torch at once (no export to wait for)" in log
        assert "in the background)" in log
        first = classify(server.url, payload)
        model = measured_model(server)
        chosen = model["backend"]
        assert chosen in INSTALLED
        assert model["backend_note"].startswith("auto on cpu: fastest of median")
        assert all(f"{name} " in model["backend_note"] for name in INSTALLED)
        assert server.metric("unirep_backend_info", modality="image", device="cpu", backend=chosen) == 1
        if chosen != first_choice:
            assert server.metric("unirep_backend_info", modality="image", device="cpu", backend=first_choice) == 0
        log = server.log_tail(100_000)
        assert "auto on cpu for 3x64x64: medians" in log and f"chose {chosen}" in log
        classify(server.url, jpeg(6)[1])  # answered on the measured backend (another image: not from the cache)
    cache = Path(settings["UNIREP_BACKEND_CACHE_DIR"])
    exported = [p for p in cache.iterdir() if p.is_dir()]
    compiled = {"onnxruntime", "openvino"} & set(INSTALLED)
    assert len(exported) == 1 + ("openvino" in compiled)  # one ONNX export, shared; OpenVINO's IR beside it
    assert (cache / "auto-choices.json").is_file()
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
