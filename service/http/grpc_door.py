"""The gRPC side of the front door (``service.http.intake``): a call as the intake sees it (``grpc_caller``), and
one call through an intake to its one answered and counted status (``grpc_door``), shared by inference and the
model repository methods so that neither repeats a step of the other."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from service.http.intake import Caller, Intake, paced
from unirep_errors import UnirepError

T = TypeVar("T")
A = TypeVar("A")

STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_caller(context: grpc.aio.ServicerContext) -> Caller:
    """A gRPC call as the front door sees it: its peer, its metadata (as headers), its deadline."""
    metadata = list(context.invocation_metadata() or ())

    def header(name: str) -> list[str]:
        return [value for key, value in metadata if key == name and isinstance(value, str)]

    def timeout_ms() -> float | None:
        remaining = context.time_remaining()
        return remaining * 1000.0 if remaining is not None else None

    peer = urllib.parse.unquote(context.peer() or "")
    kind, _, address = peer.partition(":")
    return Caller(peer=address if kind in ("ipv4", "ipv6") else None, header=header, timeout_ms=timeout_ms)


async def abort(context: grpc.aio.ServicerContext, exc: UnirepError) -> None:
    """End the call with the status code of ``exc`` (raises, as ``context.abort`` does)."""
    await context.abort(STATUS.get(exc.status_code, grpc.StatusCode.INTERNAL), exc.message)


async def grpc_door(
    intake: Intake,
    context: grpc.aio.ServicerContext,
    admit: Callable[[Caller], Awaitable[A]],
    work: Callable[[A], Awaitable[T]],
) -> T:
    """One call through ``admit`` (a step of ``intake``) then ``work``: the result, or the call aborted with the
    error's status; either way counted once, as what the caller got (499 for a caller that gave up)."""
    caller = grpc_caller(context)
    failure: UnirepError | None = None
    async with intake:
        try:
            result = await work(await admit(caller))
            intake.answered(200)
        except Exception as exc:
            failure = intake.failed(exc)
            intake.answered(failure.status_code, context.cancelled())
    if failure is not None:
        await paced(failure)
        await abort(context, failure)
        raise failure  # not reached: abort raises
    return result
