"""What the serving commands print before they serve, run as real ``unirep`` processes: ``--print-settings`` hides
secrets, and bad settings, a malformed Redis URL or a port already taken end the start with one line (exit code,
no traceback, no password)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.service.server import free_port


def unirep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
    clean.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "url",
    ["redis://:s3cret@cache:6379/0", "redis://bob:s3cret@cache:6379/0", "redis://cache:6379/0?password=s3cret"],
)
def test_print_settings_hides_the_redis_password(url: str) -> None:
    result = unirep("serve", "--print-settings", env={"UNIREP_REDIS_URL": url})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert "s3cret" not in result.stdout and "bob" not in result.stdout
    assert printed["redis_url"].startswith("redis://") and "cache:6379/0" in printed["redis_url"]
    assert printed["port"] == 8000  # the rest is printed as it is


def test_remeasure_backends_is_a_flag_and_a_setting() -> None:
    """``auto`` reuses the backend it measured on this host unless told to measure again."""
    assert json.loads(unirep("serve", "--print-settings").stdout)["backend_remeasure"] is False
    flag = unirep("serve", "--remeasure-backends", "--print-settings")
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["backend_remeasure"] is True
    env = unirep("serve", "--print-settings", env={"UNIREP_BACKEND_REMEASURE": "1"})
    assert json.loads(env.stdout)["backend_remeasure"] is True, env.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"UNIREP_PORT": "abc"}, "port: Input should be a valid integer"),
        ({"UNIREP_IMAGE__PARAMS": "{not json"}, "image.params"),
        ({"UNIREP_REDIS_URL": "redis://:s3cret@cache:notaport/0"}, "is malformed"),
        ({"UNIREP_REDIS_URL": "http://:s3cret@cache:6379/0"}, "must start with redis://"),
    ],
)
def test_bad_settings_are_one_line(env: dict[str, str], expected: str) -> None:
    result = unirep("serve", "--print-settings", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unirep serve: invalid settings: "), result.stderr
    assert expected in lines[0] and "s3cret" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("keys", "list"), ("export", "image", "--format", "onnx", "-o", "x.onnx")])
def test_other_commands_say_it_in_one_line_without_the_password(command: tuple[str, ...]) -> None:
    result = unirep(*command, env={"UNIREP_REDIS_URL": "redis://:s3cret@cache:notaport/0"})
    assert result.returncode == 2 and "s3cret" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "is malformed" in result.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_port_in_use_is_one_line(command: str) -> None:
    """A second ``unirep worker`` on a host finds the port taken by the first; here a listening socket has it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"UNIREP_HOST": "127.0.0.1", "UNIREP_PORT": str(port), "UNIREP_REDIS_URL": "redis://127.0.0.1:1/0"}
        result = unirep(command, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and f"cannot listen on 127.0.0.1:{port}" in lines[0], result.stderr
    assert "in use" in lines[0]


def test_a_worker_does_not_claim_the_grpc_port_it_never_serves() -> None:
    """A gateway and a worker on one host share their settings file; only the gateway listens on ``grpc_port``."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            "UNIREP_HOST": "127.0.0.1",
            "UNIREP_PORT": str(free_port()),
            "UNIREP_GRPC_PORT": str(taken.getsockname()[1]),
            "UNIREP_REDIS_URL": "redis://127.0.0.1:1/0",
        }
        gateway = unirep("gateway", env=env)
        assert gateway.returncode == 1 and "cannot listen on 127.0.0.1:" in gateway.stderr
        clean = {k: v for k, v in os.environ.items() if not k.startswith("UNIREP_")}
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            cwd=REPO_ROOT,
            env={**clean, "HF_HUB_OFFLINE": "1", **env},
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        answered = False
        try:  # its health port answering means it got past the port checks
            deadline = time.monotonic() + 180
            while not answered and time.monotonic() < deadline and worker.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    answered = httpx.get(f"http://127.0.0.1:{env['UNIREP_PORT']}/healthz", timeout=1).is_success
                time.sleep(0.2)
        finally:  # its own session: the whole tree goes, whatever it was waiting on (Redis is not there)
            os.killpg(worker.pid, signal.SIGKILL)
            _, stderr = worker.communicate(timeout=60)
        assert answered, stderr.decode(errors="replace")[-2000:]
        assert b"cannot listen" not in stderr
