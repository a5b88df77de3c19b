"""No Redis secret in any log line and no internal address in any answer: every URL form is redacted, and a
server whose Redis is gone answers 503 saying only that Redis is unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.http.public_text import public_message
from service.scaleout.connection import RedisHealth, redacted
from tests.service import media
from tests.service.server import free_port, running


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://admin:s3cret@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://admin@redis:6379", "redis://***@redis:6379"),
        ("rediss://u:p%40ss@cache.internal:6380/2", "rediss://***@cache.internal:6380/2"),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("redis://redis:6379/0?username=bob&socket_timeout=2", "redis://redis:6379/0?username=***&socket_timeout=2"),
        ("unix:///run/redis.sock?password=s3cret&db=0", "unix:///run/redis.sock?password=***&db=0"),
        ("redis://a:b@c@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_every_url_form_is_redacted(url: str, expected: str) -> None:
    assert redacted(url) == expected
    assert "s3cret" not in redacted(url) and "bob" not in redacted(url)


def test_health_description_for_clients_has_no_address() -> None:
    health = RedisHealth("cache", 1.0, url="redis://:s3cret@10.1.2.3:6379/0")
    health.failed(ConnectionError("Error 111 connecting to 10.1.2.3:6379. Connection refused."))
    assert "10.1.2.3" not in health.describe() and "6379" not in health.describe()
    assert "Redis is unreachable" in health.describe()


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("cannot identify image file <_io.BytesIO object at 0x7f3a2c1b9e50>", "0x7f3a"),
        ("[05:59:26] /github/workspace/src/video/video_reader.cc:83: ERROR opening: bad", "/github"),
        ("2026-11-30 05:59:26.123 decoder said no", "05:59"),
        ("points must be numbers (OverflowError: int too large to convert to float)", "OverflowError"),
        ("Redis at redis://:pw@10.0.0.5:6379/0 failed", "10.0.0.5"),
    ],
)
def test_public_messages_drop_reprs_paths_times_and_exception_names(raw: str, leak: str) -> None:
    assert leak not in public_message(raw)
    assert public_message(raw)


def test_server_with_redis_gone_leaks_neither_secret_nor_address(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://admin:userpw-s3cret@127.0.0.1:{port}/0?password=query-s3cret"
    settings = {
        "UNIREP_AUDIO__ENABLED": "false",
        "UNIREP_VIDEO__ENABLED": "false",
        "UNIREP_POINTCLOUD__ENABLED": "false",
        "UNIREP_TIMESERIES__ENABLED": "false",
        "UNIREP_WARMUP": "false",
        "UNIREP_PREPROCESS_WORKERS": "1",
        "UNIREP_REDIS_URL": url,
        "UNIREP_AUTH_ENABLED": "true",
    }
    with running(tmp_path, settings) as server, server.client() as client:
        answers = [
            client.post("/classify/image", files={"file": media.jpeg(1)}, headers={"Authorization": "Bearer x"}),
            client.get("/readyz"),
            client.get("/models"),
        ]
        log = server.log.read_text(errors="replace")
    assert answers[0].status_code == 503, answers[0].text
    assert "Redis is unreachable" in answers[0].json()["error"]["message"]
    for answer in answers:
        assert str(port) not in answer.text and "s3cret" not in answer.text
    assert "s3cret" not in log and "admin" not in log
    assert str(port) in log  # operators still learn where (redacted) in the log
