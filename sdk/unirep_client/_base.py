"""The I/O-free core shared by ``Client`` and ``AsyncClient``: configuration, requests, retries, errors, parsing.

Everything that does not block or await lives here, so the two clients differ only in their request loop (sleep
versus ``await asyncio.sleep``) and can never drift apart on policy. The policy, in one place:

- Retries: connection errors and timeouts, 429, 502 and 503, at most ``max_retries`` times. The wait is the
  server's ``Retry-After`` when it gives one (never earlier, up to 25% later so clients refused together spread
  out; over ``MAX_RETRY_AFTER`` seconds means "give up now"), else exponential backoff from
  ``INITIAL_RETRY_DELAY`` capped at ``MAX_RETRY_DELAY``, less up to 25% jitter. Classification is idempotent,
  so retrying a POST is safe.
- Deadlines: a call's ``deadline`` covers all its attempts. Each attempt tells the server the time left in
  ``X-Request-Timeout-Ms`` (the server answers 504 rather than compute something nobody waits for), its HTTP
  timeout never outlives the deadline by more than ``DEADLINE_GRACE``, and no retry starts that could not
  finish in time.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

import httpx
from pydantic import BaseModel

from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEADLINE_GRACE,
    DEADLINE_HEADER,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRY_JITTER,
    RETRY_STATUSES,
    VERSION,
)
from ._inputs import Payload
from .errors import APIConnectionError, APIStatusError, APITimeoutError, error_class_for
from .types import Timings

__all__ = ["BaseClient", "CallOptions", "CallPlan", "parse_retry_after"]

ModelT = TypeVar("ModelT", bound=BaseModel)

_TIMING_HEADERS = {
    "queue_ms": "X-Queue-Time-Ms",
    "preprocess_ms": "X-Preprocess-Time-Ms",
    "inference_ms": "X-Inference-Time-Ms",
}


class CallOptions(TypedDict, total=False):
    """Per-call options every endpoint method takes as keyword arguments."""

    timeout: float
    """Seconds for each HTTP attempt (the client's default otherwise)."""
    deadline: float
    """Seconds the whole call may take, retries included; sent to the server as ``X-Request-Timeout-Ms``."""
    max_retries: int
    extra_headers: Mapping[str, str]


@dataclass(frozen=True)
class CallPlan:
    """What one public call allows itself: its HTTP timeout, its absolute deadline, how many retries."""

    timeout: float
    deadline_at: float | None
    max_retries: int
    extra_headers: Mapping[str, str] | None = None

    def remaining(self) -> float | None:
        """Seconds until the deadline (may be negative), or None without one."""
        return None if self.deadline_at is None else self.deadline_at - time.monotonic()


class BaseClient:
    """Configuration and policy of a client; subclasses add the HTTP transport and the request loop."""

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries is None or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0 (0 disables retries); got {max_retries!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
        url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://; got {url!r}")
        self.base_url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.headers = dict(headers or {})
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def _options(self, **overrides: Any) -> dict[str, Any]:
        """Constructor arguments of a copy of this client with ``overrides`` applied (for ``with_options``)."""
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "headers": self.headers,
        }
        options.update({key: value for key, value in overrides.items() if value is not None})
        return options

    # --- building requests ------------------------------------------------------------------------------

    def _plan(
        self,
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> CallPlan:
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be a positive number of seconds; got {deadline!r}")
        return CallPlan(
            timeout=self.timeout if timeout is None else float(timeout),
            deadline_at=None if deadline is None else time.monotonic() + deadline,
            max_retries=self.max_retries if max_retries is None else max_retries,
            extra_headers=extra_headers,
        )

    def _request_kwargs(
        self,
        plan: CallPlan,
        *,
        payload: Payload | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.build_request`` (identical for the async client)."""
        headers = {"User-Agent": f"unirep-client/{VERSION}", "Accept": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        seconds = plan.timeout
        remaining = plan.remaining()
        if remaining is not None:
            headers[DEADLINE_HEADER] = str(max(1, math.ceil(remaining * 1000)))
            seconds = max(0.001, min(seconds, remaining + DEADLINE_GRACE))
        if plan.extra_headers:
            headers.update(plan.extra_headers)
        kwargs: dict[str, Any] = {
            "headers": headers,
            "params": {key: value for key, value in (params or {}).items() if value is not None},
            "timeout": httpx.Timeout(seconds, connect=min(seconds, DEFAULT_CONNECT_TIMEOUT)),
        }
        if payload is not None and payload.files is not None:
            kwargs["files"] = payload.files
        elif payload is not None and payload.json is not None:
            kwargs["json"] = payload.json
        return kwargs

    def _url(self, path: str) -> str:
        return self.base_url + path

    # --- the retry policy -------------------------------------------------------------------------------

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``; None when the server's wait is too long."""
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return None
        if retry_after is not None and retry_after > 0:
            return retry_after * (1 + RETRY_JITTER * self._rng.random())
        backoff = min(INITIAL_RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
        return backoff * (1 - RETRY_JITTER * self._rng.random())

    def _delay_before_retry(
        self, plan: CallPlan, attempt: int, error: APIStatusError | APIConnectionError
    ) -> float | None:
        """How long to wait before trying again after ``error``, or None to raise it now."""
        if attempt >= plan.max_retries:
            return None
        if isinstance(error, APIStatusError):
            if error.status_code not in RETRY_STATUSES:
                return None
            delay = self._retry_delay(attempt, error.retry_after)
        else:
            delay = self._retry_delay(attempt, None)
        remaining = plan.remaining()
        if delay is None or (remaining is not None and delay >= remaining):
            return None  # the wait alone would use up the deadline: report the real failure instead
        return delay

    # --- responses --------------------------------------------------------------------------------------

    def _connection_error(self, exc: httpx.TransportError, plan: CallPlan) -> APIConnectionError:
        try:
            request: httpx.Request | None = exc.request
        except RuntimeError:  # httpx raises when the error was created without a request
            request = None
        if isinstance(exc, httpx.TimeoutException):
            remaining = plan.remaining()
            reason = "the call's deadline passed" if remaining is not None and remaining <= 0 else "timed out"
            return APITimeoutError(f"{reason} waiting for {self.base_url}: {exc!r}", request=request)
        return APIConnectionError(f"cannot reach {self.base_url}: {exc!r}", request=request)

    def _status_error(self, response: httpx.Response) -> APIStatusError:
        """Map an error response to the exception of its service code (or of its status)."""
        code: str | None = None
        details: dict[str, Any] | None = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = str(error.get("message") or response.reason_phrase)
            details = error.get("details") if isinstance(error.get("details"), dict) else None
        elif isinstance(body, dict) and isinstance(body.get("error"), str):  # the V2 protocol's own error shape
            message = body["error"]
        elif isinstance(body, dict) and "detail" in body:  # a framework error that skipped the envelope
            message = str(body["detail"])
        else:
            message = response.text[:300] or response.reason_phrase
        cls = error_class_for(response.status_code, code)
        return cls(
            message,
            response=response,
            code=code,
            details=details,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    @staticmethod
    def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
        """A typed result, with the facts the server put in headers folded in."""
        body = response.json()
        if isinstance(body, dict):
            body.setdefault("request_id", response.headers.get("X-Request-Id"))
            body.setdefault("cache", response.headers.get("X-Cache"))
            if "timings" not in body:
                body["timings"] = Timings(
                    **{field: _float_or_none(response.headers.get(name)) for field, name in _TIMING_HEADERS.items()}
                )
        return model.model_validate(body)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    seconds = _float_or_none(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
