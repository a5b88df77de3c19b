"""A sixth modality added at run time: an adapter class in a throwaway module, registered with
``register_adapter`` and loaded by ``unirep serve --adapters``, is served end to end (route, models, metrics,
settings section, docs) without touching any file of the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.service.server import Server, start, stop

PLUGIN = textwrap.dedent(
    '''
    """Depth maps: the raw little-endian float32 values of a size x size map."""
    from dataclasses import dataclass
    from typing import Any, ClassVar

    import numpy as np
    import torch

    from modality_adapters import BaseAdapter, ServingDefaults, register_adapter
    from modality_adapters.base import encode_png, gray_to_uint8
    from unirep_errors import UndecodableInputError


    @dataclass(frozen=True)
    class DepthParams:
        size: int = 16


    @register_adapter
    class DepthAdapter(BaseAdapter[DepthParams]):
        name: ClassVar[str] = "depth"
        params_type: ClassVar[type[Any]] = DepthParams
        serving: ClassVar[ServingDefaults] = ServingDefaults(num_classes=3, in_chans=1, max_batch_size=4)

        def output_shape(self, **params: Any) -> tuple[int, int, int]:
            p = self.resolve_params(**params)
            return (1, p.size, p.size)

        def _decode(self, data: bytes, p: DepthParams) -> torch.Tensor:
            if len(data) != 4 * p.size * p.size:
                raise UndecodableInputError(f"a depth map is {4 * p.size * p.size} bytes, got {len(data)}")
            values = np.frombuffer(data, dtype="<f4").reshape(1, p.size, p.size)
            return torch.from_numpy(values.copy())

        def preview(self, tensor: torch.Tensor, **params: Any) -> bytes:
            return encode_png(gray_to_uint8(tensor.numpy()[0]))
    '''
)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plugin")
    (directory / "depth_plugin.py").write_text(PLUGIN)
    return directory


@pytest.fixture(scope="module")
def server(plugin_dir: Path) -> Iterator[Server]:
    settings = {
        "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO_ROOT)]),
        "UNIREP_VIDEO__ENABLED": "false",
        "UNIREP_AUDIO__ENABLED": "false",
        "UNIREP_DEPTH__MAX_DELAY_MS": "1",
    }
    srv = start(plugin_dir, settings, args=("--adapters", "depth_plugin"))
    try:
        yield srv
    finally:
        stop(srv)


def depth_map(seed: int) -> bytes:
    return np.random.default_rng(seed).random((16, 16)).astype("<f4").tobytes()


def test_the_new_modality_classifies_embeds_and_refuses_bad_input(server: Server) -> None:
    with server.client() as client:
        ok = client.post("/classify/depth", content=depth_map(0), params={"top_k": 2})
        embed = client.post("/embed/depth", content=depth_map(1))
        bad = client.post("/classify/depth", content=b"\x00" * 12)
        json_body = client.post("/classify/depth", json={"data": [1, 2]})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["modality"] == "depth" and len(body["predictions"]) == 2
    assert {p["label"] for p in body["predictions"]} <= {"class_0", "class_1", "class_2"}
    assert embed.status_code == 200 and embed.json()["dim"] == len(embed.json()["embedding"]) > 0
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "undecodable_input"
    assert json_body.status_code == 415


def test_models_metrics_and_docs_list_it(server: Server) -> None:
    with server.client() as client:
        client.post("/classify/depth", content=depth_map(2))
        models = {m["modality"]: m for m in client.get("/models").json()["models"]}
        openapi = client.get("/openapi.json").json()
    assert "video" not in models
    assert models["depth"]["input_shape"] == [1, 16, 16] and models["depth"]["num_classes"] == 3
    assert models["depth"]["max_batch_size"] == 4 and models["depth"]["max_delay_ms"] == 1.0
    assert server.metric("unirep_requests_total", modality="depth", endpoint="classify", status="200") >= 1
    params = openapi["paths"]["/classify/{modality}"]["post"]["parameters"]
    modality = next(p for p in params if p["name"] == "modality")
    assert "depth" in modality["schema"]["enum"]
    assert "depth" in openapi["info"]["description"]


def test_the_settings_have_its_section(plugin_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO_ROOT)])}
    env.pop("UNIREP_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--adapters", "depth_plugin", "--print-settings"],
        cwd=REPO_ROOT,
        env={**env, "UNIREP_DEPTH__MAX_BATCH_SIZE": "7"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["depth"]["max_batch_size"] == 7
    missing = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--adapters", "no_such_plugin_module", "--print-settings"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no_such_plugin_module" in missing.stderr


def test_the_sdk_and_cli_send_to_it(server: Server, tmp_path: Path) -> None:
    from unirep_client import Client

    with Client(server.url) as client:
        answer = client.classify("depth", depth_map(4), top_k=2)
        assert answer.modality == "depth" and len(answer.predictions) == 2
        assert "depth" in {m.modality for m in client.models()}
    sample = tmp_path / "map.bin"
    sample.write_bytes(depth_map(5))
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "embed", "depth", str(sample), "--json", "--no-progress"],
        cwd=REPO_ROOT,
        env={**os.environ, "UNIREP_URL": server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["result"]["dim"] > 0
