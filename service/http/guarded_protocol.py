"""The gateway's HTTP/1.1 protocol: uvicorn's h11 protocol with every resource bounded before the app (and so
before auth) sees a request.

What uvicorn enforces on its own, and what it does not (checked against uvicorn 0.3x-0.5x):

- header size: the default protocol (httptools) has no limit at all, a 1 MB header is served; the h11 protocol
  takes ``h11_max_incomplete_event_size``, but h11 checks it only while a head is *incomplete* (a larger head that
  arrives in one read passes) and the refusal is a plain-text 400. Here: h11 with that limit, plus a check of
  every complete head, answered 431 in the JSON error envelope.
- header-read timeout: none (``timeout_keep_alive`` only covers the idle time between requests; a client that
  trickles a head one byte at a time is held forever). Here: ``header_timeout_s`` from the first byte of a head
  (or the connection) to its end, then 408 and close.
- body idle timeout: none (a request that declares 50 MB, sends 48 KB and stops is never answered). Here:
  ``body_idle_timeout_s`` without a byte while the app is waiting for the body, then 408 and close; the app sees
  a disconnect. Time while reading is paused (the app has not asked for more) does not count.
- total body time: none (a client sending one byte every few seconds never trips an idle timeout and holds its
  connection and its request's admission for as long as it likes). Here: ``body_timeout_s`` from the end of the
  head to the end of the body, then 408 and close, like the idle timeout; time during which the app is not
  reading is granted again, not held against the client.
- connection count: ``limit_concurrency`` answers 503 only once a request head has been parsed, so the sockets
  (and their buffers) are held anyway. Here: ``max_connections`` is checked when the connection is accepted; one
  over it gets a 503 at once and is closed, without reading.
- uvicorn's own "Invalid HTTP request" 400 is plain text; here it is the JSON envelope like every other error.
- refusals close lingeringly: the answer is written, the sending side is shut (FIN), and whatever the client is
  still sending is read and discarded for up to ``LINGER_S`` / ``LINGER_BYTES`` before the socket closes. Closing
  a socket with unread input makes the kernel send a reset, which can destroy the answer before the client reads
  it: a client still uploading its oversized head or body would see "connection reset" instead of the 431/408.

h11 is pure Python and a little slower than httptools per request; for a model service whose requests cost
milliseconds of decoding and inference that is noise, and it is the parser that can be bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.http.security_headers import DATA_POLICY

log = logging.getLogger(__name__)

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
LINGER_S = 2.0
"""How long a refused connection's late input is drained before the socket closes."""
LINGER_BYTES = 1024 * 1024
"""How much late input a refused connection drains at most (then it closes at once)."""

BODY_STALLED = "unirep.body_stalled"
"""Set in a request's ASGI scope when its body stalled and this protocol answered 408 (the app sees a disconnect)."""
_CODES = {400: "bad_request", 408: "request_timeout", 431: "headers_too_large", 503: "service_unavailable"}


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    max_connections: int = 1024


def raw_error(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` response in the service's error envelope, written without h11."""
    body = json.dumps({"error": {"code": _CODES.get(status, "http_error"), "message": message}}).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"x-content-type-options: nosniff",
        b"content-security-policy: " + DATA_POLICY.encode(),
    ]
    if status == 503:
        head.append(b"retry-after: 1")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def head_size(event: h11.Request) -> int:
    """Bytes of a parsed head as sent (request line and header lines, without the blank line)."""
    size = len(event.method) + len(event.target) + 11
    return size + sum(len(name) + len(value) + 4 for name, value in event.headers)


class _BoundedConnection(h11.Connection):
    """h11 that also refuses a complete head over the limit, and remembers why it refused a request."""

    def __init__(self, limit: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=limit)
        self.limit = limit
        self.refusal = (400, "the request is not valid HTTP/1.1")

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:
                self.refusal = (431, f"the request head is larger than {self.limit} bytes")
            raise
        if isinstance(event, h11.Request) and head_size(event) > self.limit:
            self.refusal = (431, f"the request head is larger than {self.limit} bytes")
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class GuardedH11Protocol(H11Protocol):
    """Use ``protocol_class(limits)``: uvicorn builds protocols from a class, so the limits ride on a subclass."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounded = _BoundedConnection(self.limits.max_header_bytes)
        self.conn = self._bounded
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._drained = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refused = True
            log.warning("connection refused: %d open connections is the limit", self.limits.max_connections)
            self._refuse(503, "the server holds too many connections; retry shortly")
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: late input is counted and dropped, never parsed
            self._drained += len(data)
            if self._drained > LINGER_BYTES:
                self.transport.close()
            return
        if self._between_requests() and self._head_timer is None:
            self._arm_head_timer()
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a new head was parsed: its timer stops, the body's starts
            self._cancel(head=True)
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._arm_body_timer()
            if self._deadline_timer is None:
                self._arm_deadline(self.limits.body_timeout_s)
        else:
            self._cancel(body=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(head=True, body=True)
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._refused:  # already answered; h11 is in an error state and has nothing more to send
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        status, message = self._bounded.refusal
        self._refuse(status, message)

    def on_response_complete(self) -> None:
        self._cancel(body=True)
        super().on_response_complete()

    # --- timers ----------------------------------------------------------------------------------------------

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._cancel(head=True)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:  # the idle timer only: the total deadline keeps running
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_idle_timeout_s, self._body_timed_out)

    def _arm_deadline(self, delay: float) -> None:
        self._deadline_timer = self.loop.call_later(delay, self._body_deadline_passed)

    def _cancel(self, head: bool = False, body: bool = False) -> None:
        if head and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if body and self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if body and self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._between_requests() or self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            # Nothing of a next request arrived: an idle keep-alive connection, closed quietly (no response).
            self.transport.close()
            return
        log.debug("closing a connection whose request head took over %.0f s", self.limits.header_timeout_s)
        self._refuse(408, f"the request head did not arrive within {self.limits.header_timeout_s:g} s")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # the app is not reading: not the client's fault, wait again
            self._arm_body_timer()
            return
        log.debug("closing a connection whose body stalled for %.0f s", self.limits.body_idle_timeout_s)
        self._stop_body(f"no request body byte arrived for {self.limits.body_idle_timeout_s:g} s")

    def _body_deadline_passed(self) -> None:
        self._deadline_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # the app holds the body back: give the client more time, not a 408
            self._arm_deadline(self.limits.body_idle_timeout_s)
            return
        log.debug("closing a connection whose body took over %.0f s", self.limits.body_timeout_s)
        self._stop_body(f"the request body did not arrive within {self.limits.body_timeout_s:g} s")

    def _stop_body(self, message: str) -> None:
        """A 408 for a body that is too slow; the app's next ``receive()`` is a disconnect."""
        self._cancel(body=True)
        cycle = self.cycle
        started = cycle is not None and cycle.response_started
        if cycle is not None:  # the app's next receive() is a disconnect; anything it sends is dropped
            cycle.scope[BODY_STALLED] = True  # type: ignore[literal-required]  # the app counts the 408 sent here
            cycle.disconnected = True
            cycle.message_event.set()
        if started:
            self.transport.close()
        else:
            self._refuse(408, message)

    def _refuse(self, status: int, message: str) -> None:
        self._cancel(head=True, body=True)
        if self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(raw_error(status, message))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then FIN; reading goes on (see the module docstring)
        self.transport.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
