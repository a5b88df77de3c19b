"""A real ``unirep serve`` process for the service's end-to-end tests (started once per test module).

Settings are passed as ``UNIREP_*`` environment variables on top of ``SMALL``: tiny input sizes so that a 2-core
CPU runs every modality quickly, random weights (nothing downloads), the eager backend, and the caller's own
``UNIREP_*`` variables removed so a developer's shell cannot change what a test sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT

SMALL: dict[str, str] = {
    "UNIREP_LOG_LEVEL": "info",
    "UNIREP_IMAGE__WEIGHTS": "none",
    "UNIREP_IMAGE__PARAMS": json.dumps({"input_size": 64}),
    "UNIREP_AUDIO__PARAMS": json.dumps({"target_frames": 64, "num_mel_bins": 64}),
    "UNIREP_VIDEO__PARAMS": json.dumps({"frame_size": 32, "num_frames": 4, "sampling_rate": 2}),
    "UNIREP_POINTCLOUD__PARAMS": json.dumps({"image_size": 64, "num_points": 256}),
    "UNIREP_TIMESERIES__PARAMS": json.dumps({"seq_len": 16, "num_vars": 2, "d_model": 64}),
    "UNIREP_PREPROCESS_WORKERS": "2",
    # Eager torch: random weights differ on every start, so a compiled backend would export afresh each time
    # (seconds per modality); tests/service/test_backends_served.py serves through the compiled backends.
    **{f"UNIREP_{m.upper()}__BACKEND": "torch" for m in ("image", "audio", "video", "pointcloud", "timeseries")},
}
IMAGE_ONLY: dict[str, str] = {
    f"UNIREP_{m.upper()}__ENABLED": "false" for m in ("audio", "video", "pointcloud", "timeseries")
}
"""Settings that serve the image modality alone: what tests of the serving machinery (not of a modality) start."""
START_TIMEOUT_S = 180.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def metrics_text(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, parsed by prometheus-client's own parser."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for (sample, sample_labels), value in self.samples().items():
            if sample == name and all((k, v) in sample_labels for k, v in labels.items()):
                total += value
        return total

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(workdir: Path, settings: dict[str, str], base: dict[str, str] = SMALL, args: tuple[str, ...] = ()) -> Server:
    """Start ``unirep serve`` with ``base`` then ``settings`` (env names) and wait until /readyz says 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    env.update(base)
    env.update(settings)
    env.update({"HF_HUB_OFFLINE": "1", "UNIREP_HOST": "127.0.0.1", "UNIREP_PORT": str(port)})
    log = workdir / f"unirep-serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"unirep serve exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    stop(server)
    raise RuntimeError(f"unirep serve was not ready within {START_TIMEOUT_S} s:\n{server.log_tail()}")


def stop(server: Server, timeout: float = 60.0) -> int | None:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the decoder processes go too
            process.wait(timeout=10)
    return process.returncode


@contextlib.contextmanager
def running(workdir: Path, settings: dict[str, str]) -> Iterator[Server]:
    server = start(workdir, settings)
    try:
        yield server
    finally:
        stop(server)
