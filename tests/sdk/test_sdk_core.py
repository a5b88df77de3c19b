"""The SDK's shared core in isolation: retry decisions and their timing, deadlines, error mapping, parsing.

Scripted HTTP answers come from ``httpx.MockTransport`` (httpx's own test transport, not a mock of our code), so
that timing rules can be checked precisely; the same behaviour against a real server is in test_sdk_live.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import unirep_client as uc
from unirep_client._base import BaseClient, parse_retry_after

CLASSIFY_BODY = {
    "modality": "image",
    "model": "unireplknet_a",
    "weights": "random-init",
    "predictions": [{"label": "tabby", "index": 281, "score": 0.9}],
    "timings": {"queue_ms": 1.0, "preprocess_ms": 2.0, "inference_ms": 3.0, "total_ms": 6.5},
    "batch_size": 2,
}


class Script:
    """Answers requests in order from a list of responses (or exceptions), recording when each arrived."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


def error(status: int, code: str, retry_after: str | None = None, **details: Any) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body: dict[str, Any] = {"error": {"code": code, "message": f"{code} happened"}}
    if details:
        body["error"]["details"] = details
    return httpx.Response(status, json=body, headers=headers)


def ok(body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body or CLASSIFY_BODY, headers=headers)


def sync_client(script: Script, **kwargs: Any) -> uc.Client:
    return uc.Client("http://svc.test", http_client=httpx.Client(transport=httpx.MockTransport(script)), **kwargs)


def classify_sync(script: Script, **kwargs: Any) -> uc.ClassifyResult:
    call = {k: kwargs.pop(k) for k in ("deadline", "timeout") if k in kwargs}
    return sync_client(script, **kwargs).classify("image", b"\xff\xd8\xff fake jpeg", **call)


def classify_async(script: Script, **kwargs: Any) -> uc.ClassifyResult:
    call = {k: kwargs.pop(k) for k in ("deadline", "timeout") if k in kwargs}

    async def go() -> uc.ClassifyResult:
        http = httpx.AsyncClient(transport=httpx.MockTransport(script))
        async with uc.AsyncClient("http://svc.test", http_client=http, **kwargs) as client:
            return await client.classify("image", b"\xff\xd8\xff fake jpeg", **call)

    return asyncio.run(go())


CLIENTS = pytest.mark.parametrize("classify", [classify_sync, classify_async], ids=["sync", "async"])
Classify = Callable[..., uc.ClassifyResult]


@CLIENTS
def test_429_is_retried_after_retry_after_seconds(classify: Classify) -> None:
    script = Script(error(429, "queue_full", "0.2"), error(429, "queue_full", "0.2"), ok())
    result = classify(script, max_retries=2)
    assert result.top is not None and result.top.label == "tabby"
    assert len(script.requests) == 3
    for gap in script.gaps():
        assert 0.2 <= gap < 0.2 * 1.25 + 0.15  # never earlier than asked, at most the jitter later


@CLIENTS
def test_503_then_success_and_connection_errors_are_retried(classify: Classify) -> None:
    script = Script(httpx.ConnectError("refused"), error(503, "service_unavailable", "0.05"), ok())
    assert classify(script, max_retries=2).model == "unireplknet_a"
    assert len(script.requests) == 3
    assert 0.375 <= script.gaps()[0] <= 0.5 + 0.15  # first backoff: 0.5 s less up to 25% jitter


@CLIENTS
def test_retries_give_up_after_max_retries_with_the_last_error(classify: Classify) -> None:
    script = Script(*(error(429, "rate_limited", "0.01") for _ in range(3)))
    with pytest.raises(uc.RateLimitedError) as info:
        classify(script, max_retries=2)
    assert len(script.requests) == 3
    assert info.value.retry_after == pytest.approx(0.01)
    assert info.value.status_code == 429 and info.value.code == "rate_limited"


@CLIENTS
def test_connection_errors_surface_as_api_connection_error(classify: Classify) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with pytest.raises(uc.APIConnectionError) as info:
        classify(script, max_retries=1)
    assert len(script.requests) == 2
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.status_code is None  # no answer came back


@CLIENTS
@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "bad_request", uc.BadRequestError),
        (413, "input_too_large", uc.InputTooLargeError),
        (415, "unsupported_media_type", uc.UnsupportedMediaTypeError),
        (422, "undecodable_input", uc.UndecodableInputError),
        (422, "validation_error", uc.RequestValidationError),
        (401, "unauthorized", uc.UnauthorizedError),
        (404, "unknown_model", uc.UnknownModelError),
        (504, "deadline_exceeded", uc.DeadlineExceededError),
        (504, "preprocess_timeout", uc.PreprocessTimeoutError),
        (500, "internal_error", uc.InternalServerError),
        (500, "checkpoint_error", uc.CheckpointError),
    ],
)
def test_non_retryable_errors_raise_at_once_as_their_code(
    classify: Classify, status: int, code: str, cls: type
) -> None:
    script = Script(error(status, code, field="file"))
    with pytest.raises(cls) as info:
        classify(script, max_retries=3)
    assert len(script.requests) == 1
    assert info.value.code == code and info.value.status_code == status
    assert info.value.details == {"field": "file"}
    assert code in str(info.value)


def test_error_hierarchy_mirrors_the_services_grouping() -> None:
    assert issubclass(uc.RequestValidationError, uc.BadRequestError)
    assert not issubclass(uc.RequestValidationError, uc.UndecodableInputError)
    assert issubclass(uc.UndecodableInputError, uc.BadRequestError)
    assert issubclass(uc.InputTooLargeError, uc.BadRequestError)
    assert issubclass(uc.UnknownModelError, uc.ModelError)
    assert issubclass(uc.APITimeoutError, uc.APIConnectionError)
    assert all(issubclass(c, uc.UnirepError) for c in (uc.APIStatusError, uc.APIConnectionError))


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, uc.BadRequestError), (409, uc.BadRequestError), (429, uc.RateLimitedError), (502, uc.InternalServerError)],
)
def test_unknown_codes_and_non_json_bodies_fall_back_on_the_status(status: int, cls: type) -> None:
    script = Script(httpx.Response(status, text="<html>proxy says no</html>"))
    with pytest.raises(cls) as info:
        classify_sync(script, max_retries=0)
    assert "proxy says no" in info.value.message
    assert uc.errors.error_class_for(status, "a_code_from_the_future") is cls


def test_retry_after_too_long_is_not_waited_for() -> None:
    script = Script(error(503, "service_unavailable", str(uc.MAX_RETRY_AFTER + 1)), ok())
    started = time.monotonic()
    with pytest.raises(uc.ServiceUnavailableError):
        classify_sync(script, max_retries=2)
    assert time.monotonic() - started < 1.0 and len(script.requests) == 1


@CLIENTS
def test_deadline_is_sent_and_shrinks_across_attempts(classify: Classify) -> None:
    script = Script(error(429, "queue_full", "0.3"), ok())
    classify(script, deadline=2.0, max_retries=2)
    sent = [int(r.headers["X-Request-Timeout-Ms"]) for r in script.requests]
    assert 1900 <= sent[0] <= 2000
    assert sent[1] <= sent[0] - 300


def test_no_retry_is_started_that_the_deadline_cannot_wait_for() -> None:
    script = Script(error(429, "queue_full", "1.0"), ok())
    started = time.monotonic()
    with pytest.raises(uc.QueueFullError):
        classify_sync(script, deadline=0.5, max_retries=5)
    assert len(script.requests) == 1 and time.monotonic() - started < 0.4


def test_backoff_is_exponential_capped_and_jittered_downwards() -> None:
    client = BaseClient("http://x", api_key=None, timeout=1, max_retries=9, headers=None)
    for attempt in range(10):
        nominal = min(uc.INITIAL_RETRY_DELAY * 2**attempt, uc.MAX_RETRY_DELAY)
        delays = [client._retry_delay(attempt, None) for _ in range(200)]
        assert all(d is not None and 0.75 * nominal <= d <= nominal for d in delays)
        assert len(set(delays)) > 1  # jitter: clients refused together do not return together
    assert client._retry_delay(3, 2.0) is not None and 2.0 <= client._retry_delay(3, 2.0) <= 2.5  # type: ignore[operator]
    assert client._retry_delay(0, uc.MAX_RETRY_AFTER + 1) is None


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (parse_retry_after(when) or 0) <= 31


def test_results_tolerate_new_fields_and_fold_in_headers() -> None:
    body = {**CLASSIFY_BODY, "new_field": {"x": 1}}
    body.pop("timings")
    script = Script(ok(body, **{"X-Request-Id": "r-1", "X-Cache": "hit", "X-Queue-Time-Ms": "4.5"}))
    result = classify_sync(script)
    assert result.new_field == {"x": 1}  # type: ignore[attr-defined]
    assert result.request_id == "r-1" and result.cache == "hit"
    assert result.timings.queue_ms == 4.5
    assert result.model_dump()["new_field"] == {"x": 1}


def test_base_url_and_api_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIREP_URL", "http://from-env.test:9999/prefix/")
    monkeypatch.setenv("UNIREP_API_KEY", "k-123")
    script = Script(httpx.Response(200, json={"status": "ok"}))
    client = uc.Client(http_client=httpx.Client(transport=httpx.MockTransport(script)))
    assert client.health().status == "ok"
    (request,) = script.requests
    assert str(request.url) == "http://from-env.test:9999/prefix/healthz"
    assert request.headers["Authorization"] == "Bearer k-123"
    assert request.headers["User-Agent"].startswith("unirep-client/")
    explicit = client.with_options(base_url="http://arg.test", api_key="k-arg")
    assert explicit.base_url == "http://arg.test" and explicit.api_key == "k-arg"


def test_ready_is_false_on_503_without_retrying() -> None:
    script = Script(error(503, "service_unavailable", "1"), httpx.Response(200, json={"status": "ready"}))
    client = sync_client(script)
    assert client.ready() is False
    assert client.ready() is True
    assert len(script.requests) == 2


def test_invalid_configuration_is_refused_early() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        uc.Client("http://x", max_retries=-1)
    with pytest.raises(ValueError, match="http"):
        uc.Client("localhost:8000")
    with pytest.raises(ValueError, match="deadline"):
        sync_client(Script()).classify("image", b"x", deadline=0)
