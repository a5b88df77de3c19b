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
import re
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.service.server import start, stop

BASE_SETTINGS = {
    "UNIREP_WARMUP": "false",
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_IMAGE__WEIGHTS": "none",
    "UNIREP_VIDEO__ENABLED": "false",
    "UNIREP_LOG_LEVEL": "warning",
}


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


@contextlib.contextmanager
def live_server(workdir: Path, **settings: str) -> Iterator[LiveServer]:
    """Start ``unirep serve`` with ``settings`` (env names), wait until /readyz says 200, stop it with SIGTERM."""
    server = start(workdir, {**BASE_SETTINGS, **settings}, base={})
    try:
        port = int(server.url.rsplit(":", 1)[1])
        yield LiveServer(url=server.url, port=port, process=server.process, log=server.log)
    finally:
        stop(server)


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
