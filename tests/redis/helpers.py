"""Real processes for the Redis suite: a ``redis-server`` on a free port, and ``unirep serve|gateway|worker``.

Settings are ``UNIREP_*`` variables on top of the service suite's ``SMALL`` (tiny inputs, UniRepLKNet-A) with
warm-up at batch size 1 only and one decoder process, so that five processes fit on a 2-core machine. Weights are
files written by the test (``write_checkpoints``): every worker then loads the same weights, so answers can be
compared across workers, gateways and an in-process reference.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import redis

from tests.conftest import REPO_ROOT
from tests.service.server import SMALL, free_port

if TYPE_CHECKING:
    from service.settings import ServiceSettings

FAST: dict[str, str] = {
    **SMALL,
    "UNIREP_PREPROCESS_WORKERS": "1",
    "UNIREP_WARMUP": "false",
    "UNIREP_TORCH_THREADS": "1",
    "UNIREP_LOG_LEVEL": "info",
}
START_TIMEOUT_S = 180.0


@dataclass
class RedisServer:
    """A real ``redis-server`` (no persistence) that a test can stop and start again on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run scripts/setup.sh (apt package redis-server)"
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)


@dataclass
class Proc:
    """One ``unirep`` process; ``url`` serves /readyz (gateways: the API; workers: health and metrics only)."""

    command: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics", timeout=10).text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        return False


def launch(command: str, workdir: Path, settings: dict[str, str], port: int | None = None) -> Proc:
    """Start ``unirep <command>`` without waiting for it (start several, then ``wait_ready`` on all)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    env.update(FAST)
    env.update(settings)
    env.update({"HF_HUB_OFFLINE": "1", "UNIREP_HOST": "127.0.0.1", "UNIREP_PORT": str(port)})
    log = workdir / f"unirep-{command}-{port}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", command],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(command, f"http://127.0.0.1:{port}", process, log)


def wait_ready(*procs: Proc, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(procs)
    while waiting and time.monotonic() < deadline:
        for proc in list(waiting):
            if proc.process.poll() is not None:
                raise RuntimeError(f"unirep {proc.command} exited with {proc.process.returncode}:\n{proc.log_tail()}")
            if proc.ready():
                waiting.remove(proc)
        time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"unirep {waiting[0].command} was not ready in {timeout} s:\n{waiting[0].log_tail()}")


def stop(proc: Proc, timeout: float = 30.0) -> int | None:
    if proc.process.poll() is None:
        proc.process.send_signal(signal.SIGTERM)
        try:
            proc.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait(timeout=10)
    return proc.process.returncode


def kill9(proc: Proc) -> None:
    """SIGKILL the whole process group: the worker and anything it started die at once, mid-batch."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.process.pid, signal.SIGKILL)
    proc.process.wait(timeout=10)


@contextlib.contextmanager
def running(command: str, workdir: Path, settings: dict[str, str]) -> Iterator[Proc]:
    proc = launch(command, workdir, settings)
    try:
        wait_ready(proc)
        yield proc
    finally:
        stop(proc)


def unirep_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_checkpoints(directory: Path, settings: dict[str, str], modalities: tuple[str, ...]) -> dict[str, str]:
    """A random (but fixed) deploy-form checkpoint per modality, saved to files: ``UNIREP_<M>__WEIGHTS`` entries."""
    import torch

    from modality_adapters import get_adapter
    from servable.build import build_served_model

    config = settings_from_env(settings)
    out: dict[str, str] = {}
    torch.manual_seed(0)
    for modality in modalities:
        cfg = config.modality(modality)
        served = build_served_model(cfg, get_adapter(modality))
        path = directory / f"{modality}.pt"
        assert served.module is not None  # built here, not described from elsewhere
        torch.save(served.module.state_dict(), path)
        out[f"UNIREP_{modality.upper()}__WEIGHTS"] = str(path)
    return out


def settings_from_env(settings: dict[str, str]) -> ServiceSettings:
    """The ``ServiceSettings`` a process launched with ``settings`` builds (for in-process references)."""
    from service.settings import ServiceSettings

    env = {**FAST, **settings}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return ServiceSettings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
