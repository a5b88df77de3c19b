"""A real ``unirep serve`` process on a free loopback port (and small real media), for the SDK, CLI and monitoring
tests.

Small settings keep it quick on a CPU: no warm-up, one decoder process, random weights (nothing downloads), video
off. Tests add settings as ``UNIREP_*`` variables; the caller's own ``UNIREP_*`` variables are removed first so a
developer's shell cannot change what a test sees.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.conftest import REPO_ROOT

BASE_SETTINGS = {
    "UNIREP_WARMUP": "false",
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_IMAGE__WEIGHTS": "none",
    "UNIREP_VIDEO__ENABLED": "false",
    "UNIREP_LOG_LEVEL": "warning",
}
START_TIMEOUT_S = 180.0


@dataclass
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def live_server(workdir: Path, **settings: str) -> Iterator[LiveServer]:
    """Start ``unirep serve`` with ``settings`` (env names), wait until /readyz says 200, stop it with SIGTERM."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    env.update(BASE_SETTINGS)
    env.update(settings)
    env.update({"HF_HUB_OFFLINE": "1", "UNIREP_HOST": "127.0.0.1", "UNIREP_PORT": str(port)})
    log = workdir / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", port=port, process=process, log=log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"unirep serve exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"unirep serve was not ready within {START_TIMEOUT_S} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the decoder and worker children go too
            process.wait(timeout=10)


def png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A distinct small PNG per seed (distinct bytes, so no cache can answer for another)."""
    image = Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16_000) -> Path:
    samples = [int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate))]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none is exported yet)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total
