"""``image.params.decode_mode = "fast"`` served end to end: the map the server classifies is the fast decode, and an
unknown mode stops ``unirep serve`` at start with a message that names the parameter."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modality_adapters import get_adapter
from tests.conftest import REPO_ROOT
from tests.service.server import IMAGE_ONLY, SMALL, Server, running

SIZE = 64


def large_jpeg() -> bytes:
    """1280 x 720, smooth gradients plus a little grain: 1/8 of it is still larger than the 73-pixel target."""
    yy, xx = np.mgrid[0:720, 0:1280].astype(np.float32)
    rgb = np.stack([128 + 90 * np.sin(xx / 90), 128 + 90 * np.cos(yy / 60), 128 + 50 * np.sin((xx + yy) / 200)], -1)
    rgb += np.random.default_rng(0).normal(0, 6, rgb.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {**IMAGE_ONLY, "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": SIZE, "decode_mode": "fast"})}
    with running(tmp_path_factory.mktemp("fast"), settings) as srv:
        yield srv


def test_the_served_map_is_the_fast_decode(server: Server) -> None:
    data = large_jpeg()
    adapter = get_adapter("image")
    fast = adapter.preview(adapter.decode(data, input_size=SIZE, decode_mode="fast"), input_size=SIZE)
    exact = adapter.preview(adapter.decode(data, input_size=SIZE), input_size=SIZE)
    assert fast != exact  # the image is large enough for the reduced decode to show
    with server.client() as client:
        preview = client.post("/preview/image", files={"file": ("big.jpg", data, "image/jpeg")})
        classified = client.post("/classify/image", files={"file": ("big.jpg", data, "image/jpeg")})
    assert preview.status_code == 200, preview.text
    assert preview.content == fast
    assert classified.status_code == 200, classified.text
    assert len(classified.json()["predictions"]) >= 1


def test_an_unknown_decode_mode_stops_the_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    env.update(SMALL)
    env.update(IMAGE_ONLY)
    env.update({"HF_HUB_OFFLINE": "1", "UNIREP_PORT": "0"})
    env["UNIREP_IMAGE__PARAMS"] = json.dumps({"decode_mode": "turbo"})
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=180
    )
    log = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, log[-2000:]
    assert "decode_mode must be one of ('exact', 'fast'), got 'turbo'" in log
