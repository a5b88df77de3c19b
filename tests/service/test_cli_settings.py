"""What the serving commands print before they serve, run as real ``unirep`` processes: ``--print-settings`` hides
secrets, and bad settings, a malformed Redis URL or a port already taken end the start with one line (exit code,
no traceback, no password)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


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
