"""The gateway's request and response plumbing: bounded body reading, payload extraction (multipart, raw, JSON),
disconnect watching, and the one error envelope.

Every error the service returns has the shape ``{"error": {"code", "message", "details"?}}``; 429 and 503 carry
``Retry-After``. Codes come from ``unirep_errors`` (one hierarchy, mirrored by the SDK).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import Message, Receive

from modality_adapters import adapter_class, list_adapters
from service.http.public_text import public_details, public_message
from unirep_errors import (
    InputTooLargeError,
    InvalidParameterError,
    UndecodableInputError,
    UnirepError,
    UnsupportedMediaTypeError,
)

REQUEST_ID_HEADER = "X-Request-Id"


@dataclass
class Payload:
    data: bytes
    filename: str | None
    content_type: str


def request_id(request: Request) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one; echoed on every response."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= 128 and given.isprintable():
        return given
    return uuid.uuid4().hex


async def read_body(
    request: Request, limit: int, head: Callable[[bytes], None] | None = None, head_bytes: int = 1024
) -> bytes:
    """The whole body, refusing (413) as soon as it exceeds ``limit``: a declared length is checked first.

    ``head`` is shown the first ``head_bytes`` (or the whole body when shorter) once, as soon as they arrived: it
    may refuse the request before the rest is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InputTooLargeError(f"the body is {declared} bytes; the limit is {limit}", size=int(declared), limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InputTooLargeError(f"the body exceeds the {limit}-byte limit", limit=limit)
        chunks.append(chunk)
        if head is not None and size >= head_bytes:
            head(b"".join(chunks)[:head_bytes])
            head = None
    if head is not None:
        head(b"".join(chunks))
    return b"".join(chunks)


async def extract_payload(request: Request, body: bytes, modality: str) -> Payload:
    """Multipart (field ``file``), JSON (for adapters with a ``json_example``), or the raw body with its type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        replayed = Request(request.scope, _replay(body))
        try:
            form = await replayed.form(max_files=4, max_fields=16)
        except Exception as exc:
            raise UndecodableInputError("the multipart body cannot be parsed") from exc
        uploads = form.getlist("file")
        if len(uploads) > 1:
            await form.close()
            raise InvalidParameterError(
                f"the multipart body has {len(uploads)} parts named 'file'; send exactly one", parts=len(uploads)
            )
        upload = uploads[0] if uploads else None
        if upload is None or isinstance(upload, str):
            raise UndecodableInputError(
                "the multipart body has no file in field 'file' (curl -F file=@PATH)", fields=list(form.keys())
            )
        data = await upload.read()
        await form.close()
        return Payload(data, upload.filename, (upload.content_type or "application/octet-stream").lower())
    if content_type == "application/json" and adapter_class(modality).json_example is None:
        takes_json = " and ".join(n for n in list_adapters() if adapter_class(n).json_example is not None)
        raise UnsupportedMediaTypeError(
            f"JSON bodies are for {takes_json}; send the {modality} file as multipart or raw bytes"
        )
    return Payload(body, None, content_type or "application/octet-stream")


def decoder_hints(modality: str, payload: Payload) -> dict[str, Any]:
    """Per-request decoder params the adapter reads off the upload (e.g. a point cloud's format from its name)."""
    return adapter_class(modality).request_hints(payload.filename, payload.content_type)


def parse_timeout_ms(request: Request) -> float | None:
    """Strictly digits (no sign, no ``_``, no exponent, no fraction), once, and positive."""
    values = request.headers.getlist("x-request-timeout-ms")
    if len(values) > 1:
        raise InvalidParameterError("X-Request-Timeout-Ms is given more than once; send it once")
    raw = values[0].strip() if values else ""
    if raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,10}", raw) or int(raw) <= 0:
        raise InvalidParameterError(
            "X-Request-Timeout-Ms must be a positive whole number of milliseconds, e.g. 1500", value=raw[:40]
        )
    return float(int(raw))


def check_single_query_params(request: Request) -> None:
    """A repeated scalar query parameter (``?top_k=3&top_k=50``) is refused rather than one of them picked."""
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidParameterError(
            f"query parameter(s) {', '.join(repeated)} given more than once; send each once", parameters=repeated
        )


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class DisconnectWatch:
    """Notices the client going away (ASGI ``http.disconnect``) after the body was read; call it to ask."""

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        with contextlib.suppress(Exception):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    return

    def __call__(self) -> bool:
        return self.gone

    def close(self) -> None:
        self._task.cancel()


def error_response(exc: UnirepError, request_id_value: str | None = None) -> JSONResponse:
    body = exc.to_dict()
    body["message"] = public_message(exc.message)
    if "details" in body:
        body["details"] = public_details(body["details"])
    return envelope(exc.status_code, body, request_id_value, exc.details.get("retry_after"))


def envelope(
    status: int, error: dict[str, Any], request_id_value: str | None = None, retry_after: Any = None
) -> JSONResponse:
    """The error envelope; 429 and 503 always carry Retry-After (1 s unless the error knows better)."""
    headers: dict[str, str] = {}
    if request_id_value:
        headers[REQUEST_ID_HEADER] = request_id_value
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="unirep"'
    if status in (429, 503):
        headers["Retry-After"] = str(max(1, math.ceil(float(retry_after if retry_after is not None else 1))))
    return JSONResponse({"error": error}, status_code=status, headers=headers)
