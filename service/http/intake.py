"""The one front door: every way in (``/classify`` and ``/embed``, ``/preview``, V2 REST, V2 gRPC) walks the same
steps, in this order, exactly once:

auth -> client identity -> served model -> admission -> per-client checks -> deadline -> body -> (the door's own
work) -> accounting of the one status the caller actually got.

Management requests (the model repository, REST and gRPC) take the same passage with an admin key and without the
inference steps: auth with the admin scope -> client identity -> body (bounded, under the body deadlines) -> (the
work) -> the one status, counted like any other (``admit_admin``).

Why one module: copies of these steps drift (a door that forgets the client charges all its callers to one shared
client and escapes per-client limits; one that counts its own status can count a 500 as a 200). A door describes
its transport (a ``Caller``) and how to find its model; the intake does the rest, so no door can skip a step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from modality_adapters import list_adapters
from servable.served import ServedModel
from service.http import request_io as io
from service.http.client_identity import ClientIdentity
from service.http.guarded_protocol import BODY_STALLED
from service.runtime.decode_guard import HEAD_BYTES
from service.runtime.serving import ServiceRuntime
from unirep_errors import ClientDisconnectedError, UnirepError

log = logging.getLogger(__name__)

HeadCheck = Callable[[bytes], None]
"""Shown the first bytes of a body as soon as they arrive; raises to refuse the request before the rest."""
CLIENT_CLOSED = 499
"""The status counted for a client that hung up: nobody received an answer."""
REFUSAL_PACE_S = 0.5
"""How long a refusal for a kind of input that keeps crashing decoders is held (see ``paced``)."""


@dataclass
class Caller:
    """What the intake needs from a request, whatever its transport."""

    peer: str | None
    """The socket peer's address (``host`` or ``host:port``), or None when unknown."""
    header: Callable[[str], list[str]]
    """Every value of a header (HTTP) or metadata key (gRPC), by lower-case name."""
    timeout_ms: Callable[[], float | None]
    """The request's own deadline, parsed (raises a 4xx for a malformed one)."""
    read_body: Callable[[int, HeadCheck | None], Awaitable[bytes]] | None = None
    """Read the body within a byte limit, showing its first bytes to a check (HTTP); None where the transport has
    parsed the message already (gRPC)."""
    upload: bool = False
    """Whether the body is the upload itself (raw or multipart): its first bytes then tell its kind, so a client
    over its crash budget for that kind is refused before the rest is read (a refusal must be cheap)."""


@dataclass
class Admitted:
    """A request past the intake: who sent it, for which model, with which deadline, and its body."""

    client: str
    served: ServedModel
    timeout_ms: float | None
    body: bytes


class Intake:
    """One request's passage through the front door; ``async with`` it to have it counted once.

    ``status`` is what the caller got; a door sets it when it answers (or leaves an exception to set it). On exit
    the in-flight gauges go down and the request counter, duration histogram and log line get that one status.
    """

    def __init__(
        self,
        runtime: ServiceRuntime,
        auth: Any,
        identity: ClientIdentity,
        door: str,
        model: str,
        inference: bool = True,
    ) -> None:
        self.runtime = runtime
        self.auth = auth
        self.identity = identity
        self.door = door
        self.model = model
        self.inference = inference
        """An inference request (in the in-flight gauge and the drain's count), not a management one."""
        self.status = 500
        self.client = "anonymous"
        self.started = time.perf_counter()

    async def __aenter__(self) -> Intake:
        if self.inference:
            self.runtime.metrics.in_flight.inc()
            self.runtime.in_flight += 1
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, UnirepError):
            self.status = exc.status_code
        elif isinstance(exc, asyncio.CancelledError):  # the transport gave up on the call: its client left
            self.status = CLIENT_CLOSED
        metrics = self.runtime.metrics
        if self.inference:
            metrics.in_flight.dec()
            self.runtime.in_flight -= 1
        label = self.model if self.model in list_adapters() else "unknown"
        metrics.requests.labels(label, self.door, str(self.status)).inc()
        metrics.request_duration.labels(label, self.door).observe(time.perf_counter() - self.started)
        log.debug("%s %s from %s: %d", self.door, label, self.client, self.status)

    async def admit(self, caller: Caller, resolve: Callable[[], ServedModel]) -> Admitted:
        """Every step before the door's own work; raises the error to answer (a ``UnirepError``)."""
        await self._identify(caller, admin=False)
        served = resolve()
        self.model = served.modality
        self.runtime.check_admission()
        self.runtime.check_client(self.client, served.modality)
        timeout_ms = caller.timeout_ms()
        body = b""
        if caller.read_body is not None:
            check = self._upload_check(caller, served.modality) if caller.upload else None
            body = await caller.read_body(self.runtime.settings.max_body_bytes, check)
        return Admitted(self.client, served, timeout_ms, body)

    async def admit_admin(self, caller: Caller) -> bytes:
        """The steps before a management request's work: an admin key (403 for an inference key), the client, and
        the body (the same size bound; the protocol's body deadlines answer 408). No model and no admission: a model
        is managed while the service drains or sheds load. Returns the body (empty where the transport parsed it)."""
        await self._identify(caller, admin=True)
        if caller.read_body is None:
            return b""
        return await caller.read_body(self.runtime.settings.max_body_bytes, None)

    async def _identify(self, caller: Caller, admin: bool) -> None:
        """Auth (the admin scope for management), then the client: its key when keys are on, else its address. A
        key's weight is noted for the client: fair scheduling gives it a share of the decoders and batch places in
        proportion (every other client weighs 1)."""
        if self.auth is None:
            self.client = self.identity.client(caller.peer, caller.header)
            return
        values = caller.header("authorization")
        header = values[0] if values else None
        if admin:
            self.client = self.identity.client(caller.peer, caller.header, await self.auth.authorize_admin(header))
            return
        grant = await self.auth.grant(header)
        self.client = self.identity.client(caller.peer, caller.header, grant.key_id)
        self.runtime.weights.note(self.client, grant.weight)

    def _upload_check(self, caller: Caller, modality: str) -> HeadCheck:
        content_type = (caller.header("content-type") or [""])[0]
        client = self.client
        return lambda head: self.runtime.check_upload(client, modality, head, content_type)

    def answered(self, status: int, gone: bool = False) -> int:
        """Record the status the door answers; a caller gone before a success got nothing: 499."""
        if gone and status != 200:
            status = CLIENT_CLOSED
        self.status = status
        return status

    def failed(self, exc: BaseException) -> UnirepError:
        """The error to answer for an exception out of the door's work, recorded; unexpected ones are logged."""
        if isinstance(exc, UnirepError):
            error = exc
            if error.status_code >= 500 and error.code == "internal_error":
                log.error("%s on %s failed: %s", self.door, self.model, error.message)
        else:
            log.error("%s on %s failed unexpectedly", self.door, self.model, exc_info=exc)
            error = UnirepError("internal error; see the server log")
        self.status = error.status_code
        return error


DOORS = {
    "/classify/{modality}": "classify",
    "/embed/{modality}": "embed",
    "/preview/{modality}": "preview",
    "/v2/models/{model}/infer": "v2_infer",
    "/v2/models/{model}/versions/{version}/infer": "v2_infer",
    "/v2/repository/index": "repository_index",
    "/v2/repository/models/{name}/load": "repository_load",
    "/v2/repository/models/{name}/unload": "repository_unload",
}
"""The HTTP doors by route, for requests the framework refuses before the door runs (invalid query parameters)."""


def count_refused_by_framework(request: Request, status: int) -> None:
    """Count a request the framework answered before its door ran, so that every door's count is complete."""
    route = request.scope.get("route")
    door = DOORS.get(getattr(route, "path", ""))
    if door is None:
        return
    params = request.path_params
    model = params.get("modality") or params.get("model") or params.get("name") or ""
    label = model if model in list_adapters() else "unknown"
    request.app.state.metrics.requests.labels(label, door, str(status)).inc()


Work = Callable[[Intake, Admitted, io.DisconnectWatch], Awaitable[Response]]
AdminWork = Callable[[bytes], Awaitable[Response]]
Render = Callable[[UnirepError, str], Response]
A = TypeVar("A")


async def paced(error: UnirepError) -> None:
    """Hold a refusal for crashing inputs a moment before answering it. A client that ignores Retry-After and
    retries at once would otherwise spend the gateway's CPU on refusals as fast as it can send; held, it costs one
    sleeping coroutine, and its requests arrive at most a few times a second per connection."""
    if error.status_code == 429 and "input_kind" in error.details:
        await asyncio.sleep(REFUSAL_PACE_S)


def http_caller(request: Request, upload: bool) -> Caller:
    """An HTTP request as the intake sees it; ``upload``: its body is the upload (raw or multipart)."""

    async def read_body(limit: int, head: HeadCheck | None) -> bytes:
        return await io.read_body(request, limit, head, HEAD_BYTES)

    return Caller(
        peer=request.client.host if request.client else None,
        header=request.headers.getlist,
        timeout_ms=lambda: io.parse_timeout_ms(request),
        read_body=read_body,
        upload=upload,
    )


async def http_door(
    request: Request,
    door: str,
    model: str,
    resolve: Callable[[], ServedModel],
    work: Work,
    render: Render,
    upload: bool = True,
) -> Response:
    """Serve one HTTP request through the intake: ``work`` gets the admitted request and a disconnect watch, and
    returns the answer; errors are answered by ``render`` (each protocol has its own error body). ``upload``:
    the body is the upload itself (not a protocol message around it)."""
    state = request.app.state
    caller = http_caller(request, upload)
    intake = Intake(state.runtime, state.auth, state.identity, door, model)
    return await _passage(request, intake, lambda: intake.admit(caller, resolve), work, render)


async def admin_door(request: Request, door: str, model: str, work: AdminWork, render: Render) -> Response:
    """Serve one HTTP management request (the model repository) through the intake's admin passage
    (``Intake.admit_admin``): ``work`` gets the body and returns the answer; errors are answered by ``render``."""
    state = request.app.state
    caller = http_caller(request, upload=False)
    intake = Intake(state.runtime, state.auth, state.identity, door, model, inference=False)

    async def manage(intake: Intake, body: bytes, watch: io.DisconnectWatch) -> Response:
        return await work(body)

    return await _passage(request, intake, lambda: intake.admit_admin(caller), manage, render)


async def _passage(
    request: Request,
    intake: Intake,
    admit: Callable[[], Awaitable[A]],
    work: Callable[[Intake, A, io.DisconnectWatch], Awaitable[Response]],
    render: Render,
) -> Response:
    """An HTTP request through ``admit`` then ``work``, answered once and counted once with what the caller got."""
    rid = io.request_id(request)
    watch: io.DisconnectWatch | None = None
    async with intake:
        try:
            admitted = await admit()
            watch = io.DisconnectWatch(request.receive)
            response = await work(intake, admitted, watch)
            intake.answered(response.status_code, watch.gone)
            return response
        except ClientDisconnect:  # hung up, or stalled and answered 408 by the protocol, before the body arrived
            intake.status = 408 if request.scope.get(BODY_STALLED) else CLIENT_CLOSED
            log.debug("request %s: the body never arrived (%d)", rid, intake.status)
            return render(ClientDisconnectedError("the client disconnected"), rid)
        except Exception as exc:
            error = intake.failed(exc)
            intake.answered(error.status_code, watch is not None and watch.gone)
            await paced(error)
            return render(error, rid)
        finally:
            if watch is not None:
                watch.close()
